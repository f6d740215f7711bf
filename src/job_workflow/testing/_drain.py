"""``drain(backend)``: run queued jobs on any backend until none is left.

A test that enqueues with ``perform_later`` needs workers. On a
:class:`MemoryBackend` this is :meth:`MemoryBackend.drain`. On any other
backend (the SQL one) a few threads do what a worker process does, with the
real runner: claim a job, ``perform`` it, and, when only scheduled jobs are
left, wait on the clock until the next one is due (a ``ManualClock`` jumps
there at once).
"""

from __future__ import annotations

import os
import secrets
import threading
import time

from job_workflow._runtime import current_backend, current_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.core import _runner
from job_workflow.core.ports import Clock, QueueBackend

__all__ = ["drain"]

_WAITING = frozenset({"ready", "claimed", "scheduled", "blocked"})
# How long an idle thread waits (real time) before looking again while
# another thread runs a job, and at most between looks on a real clock.
_IDLE_POLL = 0.01
_REAL_WAIT_STEP = 0.25
# A thread stuck in a task body gets this much longer than the timeout.
_GRACE = 1.0


def drain(
    backend: QueueBackend | None = None,
    threads: int = 2,
    timeout: float | None = 30,
) -> None:
    """Run jobs on ``threads`` worker threads until no job is left to run.

    Returns when no job of an unpaused queue is ready, claimed, scheduled or
    blocked; jobs of paused queues stay queued. ``backend`` defaults to the
    process backend. Scheduled jobs (``wait=``, reschedules, retries of
    sub-jobs) are waited for on the process clock: instantly on a
    ``ManualClock``, for real on the system clock. A job that fails is
    recorded as failed, not raised: assert on its status.

    Raises TimeoutError after ``timeout`` seconds of real time (None: no
    limit), leaving unfinished jobs queued, and re-raises an error of the
    backend itself.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    if backend is None:
        backend = current_backend()
    if isinstance(backend, MemoryBackend):
        backend.drain(threads=threads, timeout=timeout)
        return
    clock = getattr(backend, "clock", None)
    if not isinstance(clock, Clock):
        clock = current_clock()
    _Drain(backend, clock, timeout).run(threads)


class _Drain:
    """Worker threads sharing one deadline and one stop flag."""

    def __init__(
        self, backend: QueueBackend, clock: Clock, timeout: float | None
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        # One thread at a time moves a manual clock to the next due job, or
        # two idle threads would jump twice as far.
        self.jump = threading.Lock()
        self.prefix = f"drain-{os.getpid()}-{secrets.token_hex(3)}"

    def run(self, threads: int) -> None:
        workers = [
            threading.Thread(
                target=self.work,
                args=(f"{self.prefix}-{n}",),
                name=f"job-workflow-drain-{n}",
                daemon=True,
            )
            for n in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            if self.deadline is None:
                worker.join()
            else:
                worker.join(max(0.0, self.deadline - time.monotonic()) + _GRACE)
        self.stop.set()
        if any(worker.is_alive() for worker in workers):
            raise TimeoutError(
                f"drain did not finish within {self.timeout}s and a task body is "
                "still running on a worker thread; unfinished jobs stay queued"
            )
        if self.errors:
            raise self.errors[0]
        if self.pending():
            raise TimeoutError(
                f"drain did not finish within {self.timeout}s; unfinished jobs "
                "stay queued"
            )

    def interrupted(self) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.stop.set()
        return self.stop.is_set()

    def work(self, worker_id: str) -> None:
        backend, clock = self.backend, self.clock
        env = _runner.RunEnv(
            backend=backend,
            clock=clock,
            worker_id=worker_id,
            interrupted=self.interrupted,
        )
        try:
            while not self.interrupted():
                backend.dispatch_due(clock.now())
                jobs = backend.claim(None, worker_id, clock.now())
                if jobs:
                    _runner.perform(env, jobs[0])
                elif self.idle():
                    return
        except BaseException as exc:  # surfaced by run(); never swallowed
            self.errors.append(exc)
            self.stop.set()

    def pending(self) -> list[str]:
        """Statuses of the jobs still to run (unpaused queues only)."""
        paused = set(self.backend.paused_queues())
        return [
            job.status
            for job in self.backend.jobs()
            if job.status in _WAITING and job.queue not in paused
        ]

    def idle(self) -> bool:
        """Wait for work; True when nothing is left and the threads stop."""
        pending = self.pending()
        if not pending:
            self.stop.set()
            return True
        if any(status != "scheduled" for status in pending):
            # Another thread runs a job (or is about to claim one): look again.
            self.stop.wait(_IDLE_POLL)
            return False
        self.wait_for_due()
        return False

    def wait_for_due(self) -> None:
        """Only scheduled jobs are left: wait on the clock until one is due."""
        clock = self.clock
        with self.jump:
            due = self.backend.next_due_time()
            if due is None:
                self.stop.wait(_IDLE_POLL)
                return
            seconds = due - clock.now()
            if seconds <= 0:
                return
            if isinstance(clock, ManualClock):
                clock.sleep(seconds)
                return
        # Real time: sleep in short steps so the deadline is honoured.
        step = min(seconds, _REAL_WAIT_STEP)
        if self.deadline is not None:
            step = min(step, max(0.0, self.deadline - time.monotonic()))
        clock.sleep(step)
