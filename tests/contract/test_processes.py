"""The supervised-backend surface: processes, heartbeats, recurring runs.

Worker processes register and heartbeat; a process whose heartbeat is older
than the alive threshold is pruned and its claimed jobs go back to the queue;
a recurring run is enqueued once however many schedulers ask.
"""

from __future__ import annotations

from job_workflow.core.ports import NewJob

T0 = 2_000_000.0


def job(queue: str = "default") -> NewJob:
    return NewJob(workflow="contract.W", arguments={}, queue=queue)


def test_deregistering_a_process_returns_its_claimed_jobs(backend) -> None:
    backend.register_process("p1", "worker", "host", 123, T0)
    [job_id] = backend.enqueue([job()], T0)
    backend.claim(None, "p1", T0)
    assert backend.deregister_process("p1", T0 + 1) == [job_id]
    assert backend.get_job(job_id).status == "ready"
    assert backend.deregister_process("p1", T0 + 2) == []


def test_a_silent_process_is_pruned_and_its_jobs_released(backend) -> None:
    backend.register_process("dead", "worker", "host", 1, T0)
    backend.register_process("alive", "worker", "host", 2, T0)
    dead_job, alive_job = backend.enqueue([job(), job()], T0)
    backend.claim(None, "dead", T0)
    backend.claim(None, "alive", T0)
    backend.heartbeat("alive", T0 + 250)
    assert backend.prune_processes(300, T0 + 299) == []
    assert backend.prune_processes(300, T0 + 301) == [dead_job]
    assert backend.get_job(dead_job).status == "ready"
    assert backend.get_job(alive_job).status == "claimed"
    assert backend.prune_processes(300, T0 + 302) == []


def test_heartbeat_of_an_unknown_process_is_ignored(backend) -> None:
    backend.heartbeat("nobody", T0)
    assert backend.prune_processes(0, T0 + 1) == []


def test_a_recurring_run_is_enqueued_once(backend) -> None:
    first = backend.enqueue_recurring("daily", T0 + 60, job(), T0)
    second = backend.enqueue_recurring("daily", T0 + 60, job(), T0 + 1)
    other_time = backend.enqueue_recurring("daily", T0 + 120, job(), T0 + 2)
    other_key = backend.enqueue_recurring("hourly", T0 + 60, job(), T0 + 3)
    assert first is not None
    assert second is None
    assert other_time is not None
    assert other_key is not None
    assert len(backend.jobs()) == 3
