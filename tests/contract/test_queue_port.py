"""The queue port contract: what every backend must do, method by method.

Times are plain numbers passed in as ``now``, so expiry and due times are
checked exactly, with no clock at all.
"""

from __future__ import annotations

import pytest

from job_workflow.core.ports import JobError, NewJob, QueueBackend

T0 = 1_000_000.0


def job(queue: str = "default", **fields: object) -> NewJob:
    return NewJob(workflow="contract.W", arguments={"n": 1}, queue=queue, **fields)  # type: ignore[arg-type]


def claim_one(
    backend: QueueBackend, now: float = T0, queues: list[str] | None = None
) -> str:
    [claimed] = backend.claim(queues, "w1", now)
    return claimed.id


# -- enqueue and claim --


def test_enqueue_returns_one_id_per_job_in_order(backend: QueueBackend) -> None:
    ids = backend.enqueue([job(), job(), job()], T0)
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert [j.id for j in backend.jobs()] == ids


def test_enqueue_of_nothing_returns_nothing(backend: QueueBackend) -> None:
    assert backend.enqueue([], T0) == []
    assert backend.jobs() == []


def test_an_enqueued_job_is_ready_and_keeps_its_payload(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job(priority=3, metadata={"k": [1, 2]})], T0)
    record = backend.get_job(job_id)
    assert record is not None
    assert record.status == "ready"
    assert record.workflow == "contract.W"
    assert dict(record.arguments) == {"n": 1}
    assert record.priority == 3
    assert dict(record.metadata) == {"k": [1, 2]}
    assert record.executions == 0


def test_claim_marks_the_job_claimed_by_the_worker(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job()], T0)
    [claimed] = backend.claim(None, "worker-7", T0)
    assert claimed.id == job_id
    assert claimed.status == "claimed"
    assert claimed.claimed_by == "worker-7"
    assert claimed.executions == 1
    assert backend.claim(None, "worker-8", T0) == []


def test_a_claimed_sub_job_s_record_carries_every_field(backend: QueueBackend) -> None:
    """Each field of the record, so one built out of order cannot pass."""
    spec = job(
        "q",
        priority=2,
        parent_id="parent-1",
        task_name="ns:t",
        each_index=4,
        concurrency_key="parent-1:ns:t",
        concurrency_limit=3,
        metadata={"each_value": "x"},
    )
    [job_id] = backend.enqueue([spec], T0)
    backend.set_current_task(job_id, "ns:t")
    [record] = backend.claim(None, "worker-9", T0 + 1)
    assert (record.id, record.workflow, dict(record.arguments)) == (
        job_id,
        "contract.W",
        {"n": 1},
    )
    assert (record.queue, record.priority, record.status) == ("q", 2, "claimed")
    assert (record.created_at, record.run_at) == (T0, T0)
    assert (record.parent_id, record.task_name, record.each_index) == (
        "parent-1",
        "ns:t",
        4,
    )
    assert (record.concurrency_key, record.concurrency_limit) == ("parent-1:ns:t", 3)
    assert (record.claimed_by, record.executions) == ("worker-9", 1)
    assert (record.finished_at, record.error, record.current_task) == (
        None,
        None,
        "ns:t",
    )
    assert dict(record.metadata) == {"each_value": "x"}
    assert record.is_sub_job


def test_claim_on_an_empty_backend_returns_nothing(backend: QueueBackend) -> None:
    assert backend.claim(None, "w1", T0) == []


def test_claim_takes_lower_priority_values_first_then_enqueue_order(
    backend: QueueBackend,
) -> None:
    late, urgent, early = backend.enqueue(
        [job(priority=5), job(priority=0), job(priority=5)], T0
    )
    order = [claim_one(backend) for _ in range(3)]
    assert order == [urgent, late, early]


def test_claim_respects_the_limit(backend: QueueBackend) -> None:
    backend.enqueue([job() for _ in range(5)], T0)
    assert len(backend.claim(None, "w1", T0, limit=3)) == 3
    assert len(backend.claim(None, "w1", T0, limit=3)) == 2


def test_claim_only_from_the_named_queues(backend: QueueBackend) -> None:
    [a] = backend.enqueue([job("a")], T0)
    [b] = backend.enqueue([job("b")], T0)
    assert backend.claim(["c"], "w1", T0) == []
    assert claim_one(backend, queues=["b"]) == b
    assert claim_one(backend, queues=["a", "b"]) == a


def test_start_inline_registers_a_job_already_claimed(backend: QueueBackend) -> None:
    record = backend.start_inline(job(), "me", T0)
    assert record.status == "claimed"
    assert record.claimed_by == "me"
    assert backend.claim(None, "other", T0) == []
    backend.finish(record.id, T0 + 1)
    finished = backend.get_job(record.id)
    assert finished is not None
    assert finished.status == "finished"


# -- scheduled jobs --


def test_a_future_job_is_scheduled_until_it_is_due(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job(run_at=T0 + 10)], T0)
    record = backend.get_job(job_id)
    assert record is not None
    assert record.status == "scheduled"
    assert backend.next_due_time() == T0 + 10
    assert backend.dispatch_due(T0 + 9.99) == 0
    assert backend.claim(None, "w1", T0 + 9.99) == []
    assert backend.dispatch_due(T0 + 10) == 1
    assert claim_one(backend, T0 + 10) == job_id
    assert backend.next_due_time() is None


def test_next_due_time_is_the_earliest(backend: QueueBackend) -> None:
    backend.enqueue([job(run_at=T0 + 30), job(run_at=T0 + 5)], T0)
    assert backend.next_due_time() == T0 + 5


# -- finishing --


def test_finish_fail_and_their_unknown_ids(backend: QueueBackend) -> None:
    first, second = backend.enqueue([job(), job()], T0)
    backend.claim(None, "w1", T0, limit=2)
    backend.finish(first, T0 + 1)
    backend.fail(second, JobError("ValueError", "boom"), T0 + 2)
    done, failed = backend.get_job(first), backend.get_job(second)
    assert done is not None
    assert failed is not None
    assert (done.status, done.finished_at) == ("finished", T0 + 1)
    assert (failed.status, failed.error) == ("failed", JobError("ValueError", "boom"))
    backend.finish("no-such-job", T0)
    backend.fail("no-such-job", JobError("E", "m"), T0)
    assert backend.get_job("no-such-job") is None


def test_a_finished_job_is_not_finished_twice_or_failed_later(
    backend: QueueBackend,
) -> None:
    [job_id] = backend.enqueue([job()], T0)
    claim_one(backend)
    backend.finish(job_id, T0 + 1)
    backend.finish(job_id, T0 + 5)
    backend.fail(job_id, JobError("E", "late"), T0 + 6)
    record = backend.get_job(job_id)
    assert record is not None
    assert (record.status, record.finished_at, record.error) == (
        "finished",
        T0 + 1,
        None,
    )


# -- reschedule and crash recovery --


def test_reschedule_gives_the_job_back_without_finishing_it(
    backend: QueueBackend,
) -> None:
    [job_id] = backend.enqueue([job()], T0)
    claim_one(backend)
    backend.reschedule(job_id, T0 + 5, T0)
    record = backend.get_job(job_id)
    assert record is not None
    assert record.status == "scheduled"
    assert record.finished_at is None
    assert record.claimed_by is None
    assert backend.claim(None, "w1", T0 + 4) == []
    backend.dispatch_due(T0 + 5)
    [again] = backend.claim(None, "w2", T0 + 5)
    assert again.id == job_id
    assert again.executions == 2


def test_reschedule_keeps_the_jobs_progress(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job()], T0)
    claim_one(backend)
    backend.record_task(job_id, "first", "done")
    backend.record_iteration(job_id, "second", 0, {"v": 1})
    backend.reschedule(job_id, T0 + 1, T0)
    state = backend.load_state(job_id)
    assert state.tasks == {"first": "done"}
    assert state.iterations == {"second": {0}}
    assert state.outputs == {"second": {0: {"v": 1}}}


def test_reschedule_of_a_job_that_is_not_claimed_is_ignored(
    backend: QueueBackend,
) -> None:
    [job_id] = backend.enqueue([job()], T0)
    backend.reschedule(job_id, T0 + 100, T0)
    record = backend.get_job(job_id)
    assert record is not None
    assert record.status == "ready"
    backend.reschedule("no-such-job", T0, T0)


def test_release_claimed_returns_only_that_workers_jobs(backend: QueueBackend) -> None:
    a, b = backend.enqueue([job(), job()], T0)
    backend.claim(None, "dead", T0)
    backend.claim(None, "alive", T0)
    assert backend.release_claimed("dead", T0 + 1) == [a]
    assert backend.release_claimed("dead", T0 + 1) == []
    assert claim_one(backend, T0 + 1) == a
    record = backend.get_job(b)
    assert record is not None
    assert record.claimed_by == "alive"


# -- concurrency limits --


def keyed(n: int, limit: int = 2) -> list[NewJob]:
    return [
        job(
            parent_id="p",
            task_name="t",
            each_index=i,
            concurrency_key="p:t",
            concurrency_limit=limit,
        )
        for i in range(n)
    ]


def test_jobs_over_the_concurrency_limit_are_blocked(backend: QueueBackend) -> None:
    ids = backend.enqueue(keyed(5), T0)
    statuses = [backend.get_job(i).status for i in ids]  # type: ignore[union-attr]
    assert statuses == ["ready", "ready", "blocked", "blocked", "blocked"]
    assert len(backend.claim(None, "w1", T0, limit=10)) == 2


def test_finishing_a_limited_job_releases_the_next_blocked_in_order(
    backend: QueueBackend,
) -> None:
    ids = backend.enqueue(keyed(4), T0)
    first, second = (c.id for c in backend.claim(None, "w1", T0, limit=2))
    backend.finish(first, T0 + 1)
    assert [c.id for c in backend.claim(None, "w1", T0 + 1, limit=10)] == [ids[2]]
    backend.fail(second, JobError("E", "m"), T0 + 2)
    assert [c.id for c in backend.claim(None, "w1", T0 + 2, limit=10)] == [ids[3]]


def test_different_keys_do_not_share_a_limit(backend: QueueBackend) -> None:
    backend.enqueue(
        [
            job(concurrency_key="k1", concurrency_limit=1),
            job(concurrency_key="k2", concurrency_limit=1),
        ],
        T0,
    )
    assert len(backend.claim(None, "w1", T0, limit=10)) == 2


# -- progress --


def test_state_of_a_new_or_unknown_job_is_empty(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job()], T0)
    for state in (backend.load_state(job_id), backend.load_state("no-such-job")):
        assert (state.tasks, state.iterations, state.outputs, state.sub_jobs) == (
            {},
            {},
            {},
            {},
        )


def test_recorded_progress_reads_back(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job()], T0)
    backend.record_iteration(job_id, "map", 0, {"x": 1, "when": "2024-01-01"})
    backend.record_iteration(job_id, "map", 2, {"x": 3, "when": None})
    backend.record_iteration(job_id, "plain", 0, None)
    state = backend.load_state(job_id)
    assert state.iterations == {"map": {0, 2}, "plain": {0}}
    assert state.outputs == {
        "map": {0: {"x": 1, "when": "2024-01-01"}, 2: {"x": 3, "when": None}}
    }
    backend.record_task(job_id, "map", "done")
    backend.record_task(job_id, "fan", "enqueued", ["s1", "s2"])
    state = backend.load_state(job_id)
    assert state.tasks == {"map": "done", "fan": "enqueued"}
    assert state.sub_jobs == {"fan": ["s1", "s2"]}
    assert "map" not in state.iterations
    assert state.outputs["map"][2] == {"x": 3, "when": None}


def test_recording_an_iteration_twice_keeps_the_last_output(
    backend: QueueBackend,
) -> None:
    [job_id] = backend.enqueue([job()], T0)
    backend.record_iteration(job_id, "map", 1, {"x": 1})
    backend.record_iteration(job_id, "map", 1, {"x": 2})
    assert backend.load_state(job_id).outputs == {"map": {1: {"x": 2}}}


def test_loaded_state_is_a_copy(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job()], T0)
    backend.record_iteration(job_id, "map", 0, {"x": 1})
    state = backend.load_state(job_id)
    state.iterations["map"].add(99)
    state.outputs["map"][0]["x"] = 42
    assert backend.load_state(job_id).outputs == {"map": {0: {"x": 1}}}
    assert backend.load_state(job_id).iterations == {"map": {0}}


def test_current_task_is_stored_on_the_job(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job()], T0)
    backend.set_current_task(job_id, "load")
    assert backend.get_job(job_id).current_task == "load"  # type: ignore[union-attr]
    backend.set_current_task(job_id, None)
    assert backend.get_job(job_id).current_task is None  # type: ignore[union-attr]
    backend.set_current_task("no-such-job", "x")


def test_sub_jobs_are_listed_by_parent_and_task(backend: QueueBackend) -> None:
    [parent] = backend.enqueue([job()], T0)
    subs = backend.enqueue(
        [job(parent_id=parent, task_name="a", each_index=i) for i in range(3)]
        + [job(parent_id=parent, task_name="b", each_index=0)],
        T0,
    )
    assert [j.id for j in backend.sub_jobs(parent, "a")] == subs[:3]
    assert [j.each_index for j in backend.sub_jobs(parent, "a")] == [0, 1, 2]
    assert {j.id for j in backend.sub_jobs(parent)} == set(subs)
    assert backend.sub_jobs(parent, "none") == []
    assert backend.sub_jobs("no-such-parent") == []
    assert backend.sub_jobs(parent, "b")[0].task_name == "b"


# -- semaphores --


def test_a_semaphore_admits_up_to_its_limit(backend: QueueBackend) -> None:
    assert backend.semaphore_acquire("api", 2, 60, "h1", T0)
    assert backend.semaphore_acquire("api", 2, 60, "h2", T0)
    assert not backend.semaphore_acquire("api", 2, 60, "h3", T0)
    stats = backend.semaphore_statistics("api", T0)
    assert (stats.limit, sorted(stats.holders)) == (2, ["h1", "h2"])


def test_release_frees_a_slot_and_a_double_release_is_refused(
    backend: QueueBackend,
) -> None:
    backend.semaphore_acquire("api", 1, 60, "h1", T0)
    assert backend.semaphore_release("api", "h1", T0)
    assert not backend.semaphore_release("api", "h1", T0)
    assert not backend.semaphore_release("unknown-key", "h1", T0)
    assert backend.semaphore_acquire("api", 1, 60, "h2", T0)


def test_an_expired_lease_frees_its_slot(backend: QueueBackend) -> None:
    assert backend.semaphore_acquire("api", 1, 10, "dead-holder", T0)
    assert not backend.semaphore_acquire("api", 1, 10, "h2", T0 + 9.99)
    assert backend.semaphore_acquire("api", 1, 10, "h2", T0 + 10)
    assert backend.semaphore_statistics("api", T0 + 10).holders == ("h2",)
    assert not backend.semaphore_release("api", "dead-holder", T0 + 10)


def test_the_same_holder_acquiring_again_renews_its_lease(
    backend: QueueBackend,
) -> None:
    assert backend.semaphore_acquire("api", 1, 10, "h1", T0)
    assert backend.semaphore_acquire("api", 1, 10, "h1", T0 + 5)
    assert not backend.semaphore_acquire("api", 1, 10, "h2", T0 + 12)
    assert backend.semaphore_statistics("api", T0 + 12).expires_at == (T0 + 15,)


def test_statistics_of_an_unknown_semaphore_are_empty(backend: QueueBackend) -> None:
    stats = backend.semaphore_statistics("nothing", T0)
    assert (stats.holders, stats.expires_at) == ((), ())


# -- queues --


def test_a_paused_queue_is_not_claimed_until_resumed(backend: QueueBackend) -> None:
    [job_id] = backend.enqueue([job("slow")], T0)
    backend.pause("slow")
    backend.pause("slow")
    assert backend.paused_queues() == ["slow"]
    assert backend.claim(None, "w1", T0) == []
    assert backend.claim(["slow"], "w1", T0) == []
    backend.resume("slow")
    assert backend.paused_queues() == []
    assert claim_one(backend) == job_id
    backend.resume("never-paused")


def test_paused_queues_are_sorted(backend: QueueBackend) -> None:
    for name in ("b", "c", "a"):
        backend.pause(name)
    assert backend.paused_queues() == ["a", "b", "c"]


def test_size_counts_ready_jobs_only(backend: QueueBackend) -> None:
    backend.enqueue([job("q"), job("q"), job("q", run_at=T0 + 60), job("other")], T0)
    backend.claim(["q"], "w1", T0)
    assert backend.queue_size("q") == 1
    assert backend.queue_size("empty") == 0


def test_latency_is_the_age_of_the_oldest_ready_job(backend: QueueBackend) -> None:
    assert backend.queue_latency("q", T0) == 0.0
    backend.enqueue([job("q")], T0)
    backend.enqueue([job("q")], T0 + 3)
    assert backend.queue_latency("q", T0 + 5) == pytest.approx(5.0)


def test_clear_fails_the_ready_jobs_and_leaves_claimed_ones(
    backend: QueueBackend,
) -> None:
    running, waiting_1, waiting_2 = backend.enqueue([job("q"), job("q"), job("q")], T0)
    claim_one(backend)
    assert backend.clear_queue("q") == 2
    assert backend.clear_queue("q") == 0
    assert backend.queue_size("q") == 0
    assert backend.get_job(running).status == "claimed"  # type: ignore[union-attr]
    for job_id in (waiting_1, waiting_2):
        record = backend.get_job(job_id)
        assert record is not None
        assert record.status == "failed"
        assert record.error is not None
        assert record.error.error_class == "QueueCleared"


def test_jobs_lists_a_queue_in_enqueue_order(backend: QueueBackend) -> None:
    a = backend.enqueue([job("q")], T0)
    backend.enqueue([job("other")], T0)
    b = backend.enqueue([job("q")], T0)
    assert [j.id for j in backend.jobs("q")] == a + b
    assert len(backend.jobs()) == 3


def test_a_rescheduled_job_gives_its_concurrency_slot_back(
    backend: QueueBackend,
) -> None:
    first, second = backend.enqueue(keyed(2, limit=1), T0)
    assert claim_one(backend) == first
    backend.reschedule(first, T0 + 10, T0)
    assert claim_one(backend, T0) == second
    backend.finish(second, T0 + 1)
    backend.dispatch_due(T0 + 10)
    assert claim_one(backend, T0 + 10) == first
