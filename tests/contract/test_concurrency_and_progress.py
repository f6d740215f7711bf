"""More of the queue port contract: concurrency keys and progress, in depth.

The cases a SQL backend can get wrong where the memory backend cannot: a
key's slot kept or given back on every path a job can take (scheduled,
released, cleared, failed while blocked), and progress read back partially.
"""

from __future__ import annotations

from job_workflow.core.ports import JobError, NewJob, QueueBackend, SubJobProgress

T0 = 1_000_000.0


def keyed(n: int, limit: int, queue: str = "default", **fields: object) -> list[NewJob]:
    return [
        NewJob(
            workflow="contract.W",
            arguments={},
            queue=queue,
            parent_id="p",
            task_name="t",
            each_index=i,
            concurrency_key="p:t",
            concurrency_limit=limit,
            **fields,  # type: ignore[arg-type]
        )
        for i in range(n)
    ]


def status(backend: QueueBackend, job_id: str) -> str:
    record = backend.get_job(job_id)
    assert record is not None
    return record.status


def claimed_ids(backend: QueueBackend, now: float = T0) -> list[str]:
    return [job.id for job in backend.claim(None, "w", now, limit=100)]


def test_a_due_job_whose_key_is_full_is_blocked_until_a_slot_frees(
    backend: QueueBackend,
) -> None:
    [running] = backend.enqueue(keyed(1, limit=1), T0)
    [later] = backend.enqueue(keyed(1, limit=1, run_at=T0 + 5), T0)
    assert status(backend, later) == "scheduled"
    assert claimed_ids(backend) == [running]
    assert backend.dispatch_due(T0 + 5) == 1
    assert status(backend, later) == "blocked"
    assert claimed_ids(backend, T0 + 5) == []
    backend.finish(running, T0 + 6)
    assert claimed_ids(backend, T0 + 6) == [later]


def test_a_released_job_keeps_its_slot(backend: QueueBackend) -> None:
    first, second = backend.enqueue(keyed(2, limit=1), T0)
    assert claimed_ids(backend) == [first]
    assert backend.release_claimed("w", T0 + 1) == [first]
    assert claimed_ids(backend, T0 + 1) == [first]
    assert status(backend, second) == "blocked"


def test_clearing_a_queue_fails_its_blocked_jobs_too(backend: QueueBackend) -> None:
    ids = backend.enqueue(keyed(3, limit=2, queue="q"), T0)
    assert [status(backend, i) for i in ids] == ["ready", "ready", "blocked"]
    assert backend.clear_queue("q") == 3
    assert [status(backend, i) for i in ids] == ["failed", "failed", "failed"]
    assert claimed_ids(backend) == []


def test_clearing_a_queue_frees_slots_for_other_queues(backend: QueueBackend) -> None:
    cleared = backend.enqueue(keyed(1, limit=1, queue="q"), T0)
    [elsewhere] = backend.enqueue(keyed(1, limit=1, queue="other"), T0)
    assert status(backend, elsewhere) == "blocked"
    assert backend.clear_queue("q") == len(cleared)
    assert claimed_ids(backend) == [elsewhere]


def test_a_rescheduled_job_queues_behind_jobs_that_became_ready_first(
    backend: QueueBackend,
) -> None:
    [parent] = backend.enqueue([NewJob(workflow="contract.W", arguments={})], T0)
    assert claimed_ids(backend) == [parent]
    backend.reschedule(parent, T0 + 1, T0)
    [child] = backend.enqueue([NewJob(workflow="contract.W", arguments={})], T0)
    backend.dispatch_due(T0 + 1)
    order = [job.id for job in backend.claim(None, "w", T0 + 1, limit=2)]
    assert order == [child, parent]


def test_a_blocked_job_that_fails_is_skipped_by_the_release(
    backend: QueueBackend,
) -> None:
    first, second, third = backend.enqueue(keyed(3, limit=1), T0)
    backend.fail(second, JobError("E", "gave up while blocked"), T0)
    assert status(backend, second) == "failed"
    assert claimed_ids(backend) == [first]
    backend.finish(first, T0 + 1)
    assert claimed_ids(backend, T0 + 1) == [third]


def test_finishing_every_job_of_a_key_runs_them_all_in_order(
    backend: QueueBackend,
) -> None:
    ids = backend.enqueue(keyed(7, limit=3), T0)
    order: list[str] = []
    now = T0
    while len(order) < len(ids):
        now += 1
        batch = claimed_ids(backend, now)
        assert 0 < len(batch) <= 3
        order.extend(batch)
        for job_id in batch:
            backend.finish(job_id, now)
    assert order == ids


def test_load_state_can_be_limited_to_some_tasks(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([NewJob(workflow="contract.W", arguments={})], T0)
    backend.record_iteration(job_id, "a", 0, {"x": 1})
    backend.record_iteration(job_id, "b", 0, {"y": 2})
    backend.record_iteration(job_id, "b", 1, None)
    backend.record_task(job_id, "fan", "enqueued", ["s1"])
    state = backend.load_state(job_id, ["b"])
    assert state.outputs == {"b": {0: {"y": 2}}}
    assert state.iterations == {"b": {0, 1}}
    assert state.tasks == {"fan": "enqueued"}
    assert state.sub_jobs == {}  # a map's id list is long: only when asked
    assert backend.load_state(job_id, ["fan"]).sub_jobs == {"fan": ["s1"]}
    nothing = backend.load_state(job_id, [])
    assert (nothing.outputs, nothing.iterations) == ({}, {})
    assert nothing.tasks == {"fan": "enqueued"}


def test_recording_an_iteration_again_without_output_keeps_the_output(
    backend: QueueBackend,
) -> None:
    [job_id] = backend.enqueue([NewJob(workflow="contract.W", arguments={})], T0)
    backend.record_iteration(job_id, "map", 0, {"x": 1})
    backend.record_iteration(job_id, "map", 0, None)
    assert backend.load_state(job_id).outputs == {"map": {0: {"x": 1}}}


def test_a_semaphore_takes_the_limit_of_the_latest_acquire(
    backend: QueueBackend,
) -> None:
    assert backend.semaphore_acquire("api", 1, 60, "h1", T0)
    assert backend.semaphore_acquire("api", 2, 60, "h2", T0)
    assert backend.semaphore_statistics("api", T0).limit == 2
    assert not backend.semaphore_acquire("api", 2, 60, "h3", T0)


def test_names_compare_exactly_case_and_all(backend: QueueBackend) -> None:
    [upper] = backend.enqueue(
        [NewJob(workflow="contract.W", arguments={}, queue="Q")], T0
    )
    [lower] = backend.enqueue(
        [NewJob(workflow="contract.W", arguments={}, queue="q")], T0
    )
    backend.pause("Q")
    backend.pause("q")
    assert backend.paused_queues() == ["Q", "q"]
    backend.resume("q")
    assert [job.id for job in backend.claim(None, "w", T0, limit=5)] == [lower]
    assert backend.queue_size("Q") == 1
    assert backend.semaphore_acquire("Key", 1, 60, "h1", T0)
    assert backend.semaphore_acquire("key", 1, 60, "h2", T0)
    assert backend.get_job(upper.upper()) is None


# -- a waiting parent's poll --


def sub_jobs_of(task: str, n: int, parent: str = "p") -> list[NewJob]:
    return [
        NewJob(
            workflow="contract.W",
            arguments={},
            parent_id=parent,
            task_name=task,
            each_index=i,
        )
        for i in range(n)
    ]


def test_sub_job_progress_counts_what_settled_per_task(backend: QueueBackend) -> None:
    first, second, third = backend.enqueue(sub_jobs_of("a", 3), T0)
    [other] = backend.enqueue(sub_jobs_of("b", 1), T0)
    assert backend.sub_job_progress("p", "a") == SubJobProgress(3, 3, ())
    assert backend.sub_job_progress("p", "missing") == SubJobProgress(0, 0, ())
    assert backend.sub_job_progress("nobody", "a") == SubJobProgress(0, 0, ())

    assert sorted(claimed_ids(backend)) == sorted([first, second, third, other])
    boom = JobError("Boom", "no")
    backend.fail(third, boom, T0 + 1, worker_id="w")
    backend.finish(second, T0 + 1, worker_id="w")
    assert backend.sub_job_progress("p", "a") == SubJobProgress(3, 1, (third,))

    backend.fail(first, boom, T0 + 2, worker_id="w")
    # Failed ids in each_index order, whatever order they failed in.
    assert backend.sub_job_progress("p", "a") == SubJobProgress(3, 0, (first, third))
    assert backend.sub_job_progress("p", "b") == SubJobProgress(1, 1, ())


def test_sub_job_progress_ignores_refused_settles_and_reschedules(
    backend: QueueBackend,
) -> None:
    first, second = backend.enqueue(sub_jobs_of("a", 2), T0)
    assert sorted(claimed_ids(backend)) == sorted([first, second])
    assert not backend.finish(first, T0 + 1, worker_id="someone-else")
    assert backend.reschedule(second, T0 + 10, T0 + 1, worker_id="w")
    assert backend.sub_job_progress("p", "a") == SubJobProgress(2, 2, ())

    backend.finish(first, T0 + 2, worker_id="w")
    assert not backend.finish(first, T0 + 3, worker_id="w")  # already finished
    assert backend.sub_job_progress("p", "a") == SubJobProgress(2, 1, ())


def test_sub_job_progress_counts_cleared_sub_jobs_as_failed(
    backend: QueueBackend,
) -> None:
    first, second = backend.enqueue(sub_jobs_of("a", 2), T0)
    assert backend.clear_queue("default") == 2
    assert backend.sub_job_progress("p", "a") == SubJobProgress(2, 0, (first, second))
