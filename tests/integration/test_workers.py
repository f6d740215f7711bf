"""Real worker processes on real databases: fan-out, throttles, crashes, bad input.

Every test runs ``python -m job_workflow.cli worker`` as a subprocess in a
session of its own (so a test can ``kill -9`` the whole group), importing
the workflows of ``_worker_flows`` through PYTHONPATH, with heartbeats,
alive threshold and polling small enough that recovery takes seconds.
Processes are killed for real (SIGKILL, SIGTERM). Nothing sleeps to "wait a
bit": every wait polls a condition (a workflow's status, a row, a line in a
file of side effects) against a deadline, through :func:`wait_for`.

Tests without a crash share one supervisor per database (the module-scoped
``fleet``): starting worker processes costs a second or two each. The
PostgreSQL restart test restarts the local cluster, which disturbs anyone
else using it, so it runs only when asked (JOB_WORKFLOW_TEST_PG_RESTART=1,
or CI=true) and as root.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from _worker_flows import Boom, FanOut, Single, Throttled
from sqlalchemy import create_engine, update
from sqlalchemy.engine import make_url

from job_workflow import WorkflowStatus
from job_workflow.backends.sql import SqlBackend
from job_workflow.core.ports import NewJob

T = TypeVar("T")
MakeBackend = Callable[[str], SqlBackend]
UrlOf = Callable[[SqlBackend], str]

HERE = Path(__file__).resolve().parent
TIMEOUT = 30.0  # seconds: the bound of any one wait; a healthy run takes far less
POLL = 0.05  # seconds between two looks at a condition
ALIVE_THRESHOLD = 2.0
FAST = [
    "--heartbeat-interval", "0.3",
    "--alive-threshold", str(ALIVE_THRESHOLD),
    "--polling-interval", "0.05",
]  # fmt: skip
SQL_PARAMS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("mysql", marks=pytest.mark.mysql),
]
CRASH_PARAMS = SQL_PARAMS[:2]  # MySQL shares their code paths; kills cost seconds
ITEMS = list(range(8))


def wait_for(
    predicate: Callable[[], T], timeout: float, what: str | Callable[[], str]
) -> T:
    """Poll ``predicate`` until it returns something true; return that.

    Raises AssertionError naming ``what`` (a callable is asked only then, so
    it can describe the state at the deadline) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s: {described}")
        time.sleep(POLL)


# -- worker processes --


@dataclass
class Worker:
    """A ``job-workflow worker`` subprocess (a supervisor and its workers)."""

    process: subprocess.Popen[bytes]
    output: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        text = self.output.read_text(errors="replace")
        return "\n".join(text.splitlines()[-15:])

    def stop(self) -> int:
        """SIGTERM the supervisor; its exit code once it has drained."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(TIMEOUT)

    def kill_all(self) -> None:
        """``kill -9`` the supervisor and every process of its session."""
        if self.process.poll() is None or _group_alive(self.pid):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(TIMEOUT)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def start_worker(
    backend: SqlBackend,
    url: str,
    directory: Path,
    *,
    processes: int = 2,
    threads: int = 2,
    extra: tuple[str, ...] = (),
) -> Worker:
    output = directory / f"worker-{time.monotonic_ns()}.log"
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "job_workflow.cli", "worker",
        "--database-url", url, "--table-prefix", backend.table_prefix,
        "--import", "_worker_flows",
        "--processes", str(processes), "--threads", str(threads),
        *FAST, *extra,
    ]  # fmt: skip
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,
        )
    return Worker(process, output)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers a test starts; whatever is still alive is killed afterwards."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill_all()


def worker_pids(backend: SqlBackend) -> dict[str, int]:
    """Registered worker processes (not supervisors): id -> pid."""
    return {
        process_id: int(info["pid"])
        for process_id, info in backend.processes().items()
        if info["kind"] == "worker"
    }


def wait_for_workers(backend: SqlBackend, worker: Worker, count: int = 2) -> None:
    wait_for(
        lambda: len(worker_pids(backend)) >= count,
        TIMEOUT,
        lambda: f"{count} registered worker processes; worker said:\n{worker.log()}",
    )


# -- workflows and their side effects --


def wait_for_workflows(
    backend: SqlBackend, job_ids: list[str], worker: Worker | None = None
) -> list[WorkflowStatus]:
    def settled() -> list[WorkflowStatus] | None:
        found = [WorkflowStatus.find(job_id, backend=backend) for job_id in job_ids]
        if all(s.status in ("succeeded", "failed") for s in found):
            return found
        return None

    def state() -> str:
        statuses = Counter(job.status for job in backend.jobs())
        said = f"; worker said:\n{worker.log()}" if worker else ""
        return f"{len(job_ids)} workflows to finish (jobs: {dict(statuses)}){said}"

    return wait_for(settled, TIMEOUT, state)


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]


def fan_out(backend: SqlBackend, log: Path, count: int, delay: float) -> list[str]:
    caller = FanOut.set(backend=backend)
    return [
        caller.perform_later(tag=f"w{n}", items=ITEMS, log=str(log), delay=delay).job_id
        for n in range(count)
    ]


def assert_fan_out_results(statuses: list[WorkflowStatus]) -> None:
    for status in statuses:
        assert status.status == "succeeded", (status.job_id, status.error)
        values = [out.value for out in status.output["compute"]]
        assert values == [100 + 2 * i for i in ITEMS]
        assert status.output["total"][0].total == sum(values)


def assert_side_effects(log: Path, tags: list[str], killed: set[int]) -> None:
    """Each iteration's side effect happened at least once, and at most once
    per run: a second line is allowed only where a killed process wrote one.
    """
    steps = [("prepare", 0), ("total", 0), *(("compute", i) for i in ITEMS)]
    expected = {(tag, task, str(index)) for tag in tags for task, index in steps}
    by_killed: Counter[tuple[str, str, str]] = Counter()
    by_survivors: Counter[tuple[str, str, str]] = Counter()
    for tag, task, index, pid in lines(log):
        counter = by_killed if int(pid) in killed else by_survivors
        counter[(tag, task, index)] += 1
    seen = set(by_killed) | set(by_survivors)
    assert seen == expected, f"lost: {expected - seen}, unexpected: {seen - expected}"
    twice = {key: n for key, n in (by_killed + by_survivors).items() if n > 1}
    assert all(n == 1 for n in by_killed.values()), twice
    assert all(n == 1 for n in by_survivors.values()), twice


# -- one supervisor shared by the tests that crash nothing --


@dataclass
class Fleet:
    kind: str
    backend: SqlBackend
    url: str
    worker: Worker
    directory: Path


@pytest.fixture(scope="module", params=SQL_PARAMS)
def fleet(
    request: pytest.FixtureRequest,
    make_module_sql_backend: MakeBackend,
    sql_url_of: UrlOf,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    kind: str = request.param
    backend = make_module_sql_backend(kind)
    directory = tmp_path_factory.mktemp(f"fleet-{kind}")
    url = sql_url_of(backend)
    worker = start_worker(backend, url, directory)
    try:
        wait_for_workers(backend, worker)
        yield Fleet(kind, backend, url, worker, directory)
        code = worker.stop()
        assert code == 0, f"exit code {code}; worker said:\n{worker.log()}"
    finally:
        worker.kill_all()


def test_fan_out_workflows_finish_across_two_worker_processes(fleet: Fleet) -> None:
    log = fleet.directory / "fan_out.log"
    job_ids = fan_out(fleet.backend, log, count=3, delay=0.02)
    assert_fan_out_results(wait_for_workflows(fleet.backend, job_ids, fleet.worker))
    assert_side_effects(log, ["w0", "w1", "w2"], killed=set())
    pids = {int(pid) for *_, pid in lines(log)}
    assert pids <= set(worker_pids(fleet.backend).values())
    assert len(pids) == 2, "both worker processes took sub-jobs"
    assert fleet.backend.execution_counts()["claimed"] == 0


def test_a_throttle_of_one_is_never_held_twice_across_processes(fleet: Fleet) -> None:
    log = fleet.directory / "throttle.log"
    items = list(range(8))
    handle = Throttled.set(backend=fleet.backend).perform_later(
        items=items, log=str(log), hold=0.03
    )
    [status] = wait_for_workflows(fleet.backend, [handle.job_id], fleet.worker)
    assert status.status == "succeeded", status.error
    held = sorted((float(start), float(end), pid) for start, end, pid, _ in lines(log))
    assert len(held) == len(items)
    for first, second in itertools.pairwise(held):
        assert first[1] <= second[0], f"held twice at once: {first} and {second}"
    assert len({pid for *_, pid in held}) == 2, "both processes held the throttle"


def test_a_job_of_an_unregistered_workflow_fails_and_the_worker_goes_on(
    fleet: Fleet,
) -> None:
    backend = fleet.backend
    serving = worker_pids(backend)
    [missing] = backend.enqueue(
        [NewJob(workflow="nope.Missing", arguments={})], time.time()
    )
    after = Single.set(backend=backend).perform_later(
        tag="after", log=str(fleet.directory / "unknown.log")
    )
    statuses = wait_for_workflows(backend, [missing, after.job_id], fleet.worker)
    assert statuses[0].status == "failed"
    assert statuses[0].error is not None
    assert statuses[0].error.error_class == "UnknownWorkflowError"
    assert "nope.Missing" in statuses[0].error.message
    assert statuses[1].status == "succeeded"
    assert worker_pids(backend) == serving, "no worker process died or restarted"


def test_a_corrupt_payload_fails_its_job_and_the_worker_goes_on(fleet: Fleet) -> None:
    backend, log = fleet.backend, str(fleet.directory / "corrupt.log")
    serving = worker_pids(backend)
    backend.pause("held")  # keep both jobs away from the workers until damaged
    held = Single.set(backend=backend, queue="held")
    corrupt = held.perform_later(tag="corrupt", log=log).job_id
    fine = held.perform_later(tag="fine", log=log).job_id
    engine = create_engine(make_url(fleet.url))
    try:
        with engine.begin() as conn:
            jobs = backend.tables.jobs
            conn.execute(
                update(jobs).where(jobs.c.id == corrupt).values(arguments="{not json")
            )
    finally:
        engine.dispose()
    backend.resume("held")
    statuses = wait_for_workflows(backend, [corrupt, fine], fleet.worker)
    assert statuses[0].status == "failed"
    error = statuses[0].error
    assert error is not None
    assert error.error_class == "CorruptPayload"
    assert "arguments column is not valid JSON" in error.message
    assert statuses[1].status == "succeeded"
    ran = [line[:2] for line in lines(Path(log))]
    assert ran == [["start", "fine"], ["end", "fine"]]
    assert worker_pids(backend) == serving, "no worker process died or restarted"


def test_the_current_task_shows_while_it_runs_and_stays_on_failure(
    fleet: Fleet,
) -> None:
    backend, log = fleet.backend, fleet.directory / "current.log"
    slow = Single.set(backend=backend).perform_later(
        tag="slow", log=str(log), delay=1.0
    )

    def shown() -> bool:
        status = WorkflowStatus.find(slow.job_id, backend=backend)
        return status.is_running and status.current_task_name == "only"

    wait_for(shown, TIMEOUT, "the running task to show as the current one")
    boom = Boom.set(backend=backend).perform_later()
    statuses = wait_for_workflows(backend, [slow.job_id, boom.job_id], fleet.worker)
    assert [s.status for s in statuses] == ["succeeded", "failed"]
    failed = backend.get_job(boom.job_id)
    assert failed is not None
    assert failed.error is not None
    assert (failed.error.error_class, failed.current_task) == (
        "RuntimeError",
        "explode",
    )
    finished = backend.get_job(slow.job_id)
    assert finished is not None
    assert finished.current_task is None


# -- crashes and stops: a supervisor of their own --


def busy_worker(backend: SqlBackend) -> int | None:
    """The pid of a worker process holding a claimed sub-job, if any."""
    pids = worker_pids(backend)
    for job in backend.jobs():
        if job.status == "claimed" and job.task_name and job.claimed_by in pids:
            return pids[job.claimed_by]
    return None


@pytest.mark.parametrize("kind", CRASH_PARAMS)
def test_kill_9_of_a_worker_process_loses_no_iteration(
    kind: str,
    make_sql_backend: MakeBackend,
    sql_url_of: UrlOf,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    backend = make_sql_backend(kind)
    log = tmp_path / "effects.log"
    job_ids = fan_out(backend, log, count=3, delay=0.1)
    worker = start_worker(backend, sql_url_of(backend), tmp_path)
    workers.append(worker)
    victim = wait_for(
        lambda: busy_worker(backend), TIMEOUT, "a worker process running a sub-job"
    )
    os.kill(victim, signal.SIGKILL)
    assert_fan_out_results(wait_for_workflows(backend, job_ids, worker))
    assert_side_effects(log, ["w0", "w1", "w2"], killed={victim})
    assert "worker process died" in worker.output.read_text()
    assert victim not in worker_pids(backend).values()
    assert worker.stop() == 0


@pytest.mark.parametrize("kind", CRASH_PARAMS)
def test_kill_9_of_the_whole_supervisor_then_a_new_one_loses_nothing(
    kind: str,
    make_sql_backend: MakeBackend,
    sql_url_of: UrlOf,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    backend = make_sql_backend(kind)
    url = sql_url_of(backend)
    log = tmp_path / "effects.log"
    job_ids = fan_out(backend, log, count=3, delay=0.1)
    first = start_worker(backend, url, tmp_path)
    workers.append(first)
    wait_for(lambda: busy_worker(backend), TIMEOUT, "a worker running a sub-job")
    killed = {int(info["pid"]) for info in backend.processes().values()}
    first.kill_all()
    assert backend.execution_counts()["claimed"] > 0, "the crash left jobs claimed"
    second = start_worker(backend, url, tmp_path, processes=1, threads=4)
    workers.append(second)
    assert_fan_out_results(wait_for_workflows(backend, job_ids, second))
    assert_side_effects(log, ["w0", "w1", "w2"], killed=killed)
    assert not killed & {int(i["pid"]) for i in backend.processes().values()}
    assert second.stop() == 0


@pytest.mark.parametrize("kind", CRASH_PARAMS)
def test_sigterm_lets_running_jobs_finish_and_exits_0(
    kind: str,
    make_sql_backend: MakeBackend,
    sql_url_of: UrlOf,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    backend = make_sql_backend(kind)
    log = tmp_path / "effects.log"
    caller = Single.set(backend=backend)
    job_ids = [
        caller.perform_later(tag=f"s{n}", log=str(log), delay=0.3).job_id
        for n in range(12)
    ]
    worker = start_worker(backend, sql_url_of(backend), tmp_path)
    workers.append(worker)
    wait_for(lambda: lines(log), TIMEOUT, "a job to start")
    assert worker.stop() == 0, worker.log()
    events = Counter((event, tag) for event, tag, _ in lines(log))
    started = {tag for event, tag in events if event == "start"}
    assert all(events[("end", tag)] == 1 for tag in started), events
    assert all(n == 1 for n in events.values()), events
    assert backend.execution_counts()["claimed"] == 0
    assert backend.processes() == {}, "every process deregistered"
    for n, job_id in enumerate(job_ids):
        job = backend.get_job(job_id)
        assert job is not None
        # Started: finished. Not started (maybe claimed, in a worker's
        # hand): back in the queue for the next worker.
        assert job.status == ("finished" if f"s{n}" in started else "ready"), job
    assert len(started) < len(job_ids), "the stop came before the queue ran dry"


def _restart_requested() -> bool:
    return (
        os.environ.get("JOB_WORKFLOW_TEST_PG_RESTART") == "1"
        or os.environ.get("CI") == "true"
    )


@pytest.mark.postgresql
def test_workers_reconnect_when_postgresql_restarts(
    make_sql_backend: MakeBackend,
    sql_url_of: UrlOf,
    workers: list[Worker],
    tmp_path: Path,
) -> None:
    if not _restart_requested():
        pytest.skip(
            "restarts the local PostgreSQL cluster; set JOB_WORKFLOW_TEST_PG_RESTART=1"
        )
    clusters = Path("/etc/postgresql")
    if os.geteuid() != 0 or not shutil.which("pg_ctlcluster") or not clusters.is_dir():
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster")
    backend = make_sql_backend("postgresql")
    url = sql_url_of(backend)
    if make_url(url).host not in ("127.0.0.1", "localhost", None):
        pytest.skip(f"the test database {backend.url} is not the local cluster")
    log = tmp_path / "effects.log"
    job_ids = fan_out(backend, log, count=4, delay=0.2)
    worker = start_worker(backend, url, tmp_path, extra=("--alive-threshold", "20"))
    workers.append(worker)
    wait_for(lambda: len(lines(log)) >= 5, TIMEOUT, "the workflows to be under way")
    [version] = [p.name for p in clusters.iterdir()]
    assert len(lines(log)) < 4 * (len(ITEMS) + 2), "the restart comes mid-run"
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert_fan_out_results(wait_for_workflows(backend, job_ids, worker))
    assert "backend unavailable" in worker.output.read_text(), worker.log()
    seen = {(tag, task, index) for tag, task, index, _ in lines(log)}
    assert {(f"w{n}", "compute", str(i)) for n in range(4) for i in ITEMS} <= seen
    assert backend.execution_counts()["claimed"] == 0
    assert worker.stop() == 0, worker.log()


# -- bad input: one line, non-zero exit, no traceback --


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--database-url", "oracle://scott@db/orcl"], "unsupported database"),
        (
            ["--database-url", "postgresql://postgres@127.0.0.1:1/test"],
            "cannot reach the postgresql server at 127.0.0.1:1",
        ),
        (["--import", "no_such_module_here"], "cannot import --import module"),
        (["--import", "_worker_broken"], "RuntimeError: this module is broken"),
    ],
    ids=["url-scheme", "unreachable", "missing-module", "module-raises"],
)
def test_bad_input_is_one_clear_line(
    arguments: list[str], expected: str, tmp_path: Path
) -> None:
    if "--database-url" not in arguments:
        arguments = ["--database-url", f"sqlite:///{tmp_path / 'jobs.db'}", *arguments]
    done = subprocess.run(
        [sys.executable, "-m", "job_workflow.cli", "worker", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE)},
        timeout=TIMEOUT,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("job-workflow: error: ")
    assert expected in line
