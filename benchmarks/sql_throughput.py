"""Throughput and claim latency of the SQL backend with real worker processes.

For each database (a local PostgreSQL, a SQLite file) and each number of
worker processes (``job-workflow worker --processes K --threads T``, started
as a real subprocess), three measurements on fresh tables:

- **single**: N single-task workflows, enqueued before the workers start;
  jobs/s = N / (last finish - first start), so start-up is not counted;
- **map**: one workflow whose map task enqueues M sub-jobs (``enqueue=True``)
  and whose last task waits for them; jobs/s = (M + 1) / (workflow finished -
  workflow enqueued), the workers being up and idle when it is enqueued;
- **latency**: the workers idle, workflows enqueued one at a time at a steady
  rate with ``perform_later``; each task body puts ``time.time()`` in its
  output, and latency = that - ``jobs.created_at`` (median and p99).

    .venv/bin/python benchmarks/sql_throughput.py [--jobs 20000] [--map 10000]
        [--databases postgresql,sqlite] [--processes 1,2] [--threads 4]

The PostgreSQL URL comes from --postgres-url, JOB_WORKFLOW_TEST_POSTGRES_URL
or postgresql+psycopg://postgres@127.0.0.1:5432/test. Numbers move with
whatever else the machine runs: run it two or three times.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, func, select

from job_workflow import Workflow, argument, task
from job_workflow.backends.sql import SqlBackend
from job_workflow.core.ports import NewJob

HERE = Path(__file__).resolve().parent
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ENQUEUE_CHUNK = 1000
DEADLINE = 900.0  # seconds: give up on one measurement after this long
_urls: dict[str, str] = {}  # table prefix -> database URL


class Noop(Workflow):
    """One task that only says when it started."""

    name = "bench.sql.Noop"

    @task(output={"started": float})
    def run(self, ctx: Any) -> dict[str, float]:
        return {"started": time.time()}


class Map(Workflow):
    """``n`` sub-jobs, then a task that waits for them and counts them."""

    name = "bench.sql.Map"

    n = argument(int)

    @task(
        each=lambda ctx: range(ctx.arguments.n),
        enqueue=True,
        output={"started": float},
    )
    def work(self, ctx: Any) -> dict[str, float]:
        return {"started": time.time()}

    @task(
        depends_on=["work"],
        dependency_wait={
            "poll_timeout": 0.5,
            "poll_interval": 0.5,
            "reschedule_delay": 0.5,
        },
        output={"count": int},
    )
    def count(self, ctx: Any) -> dict[str, int]:
        return {"count": len(ctx.output["work"])}


@dataclass(frozen=True)
class Settings:
    jobs: int
    map_size: int
    latency_jobs: int
    latency_rate: float
    threads: int
    polling_interval: float | None


# -- the worker subprocess --


@contextmanager
def worker(
    backend: SqlBackend, url: str, processes: int, settings: Settings
) -> Iterator[subprocess.Popen[bytes]]:
    """A running ``job-workflow worker``; SIGTERM and wait on the way out."""
    command = [
        sys.executable, "-m", "job_workflow.cli", "worker",
        "--database-url", url, "--table-prefix", backend.table_prefix,
        "--import", "sql_throughput",
        "--processes", str(processes), "--threads", str(settings.threads),
    ]  # fmt: skip
    if settings.polling_interval is not None:
        command += ["--polling-interval", str(settings.polling_interval)]
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until(predicate: Callable[[], bool], what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {DEADLINE:.0f} s waiting for {what}")
        time.sleep(poll)  # a benchmark watching a database, not a test


def workers_up(backend: SqlBackend, processes: int) -> None:
    def up() -> bool:
        infos = backend.processes().values()
        return sum(1 for info in infos if info["kind"] == "worker") >= processes

    wait_until(up, f"{processes} worker processes to register")


# -- reading results back --


def settled_count(backend: SqlBackend) -> int:
    jobs = backend.tables.jobs
    query = select(func.count()).where(jobs.c.status.in_(("finished", "failed")))
    with backend_connection(backend) as conn:
        return int(conn.execute(query).scalar_one())


_engines: dict[str, Engine] = {}


@contextmanager
def backend_connection(backend: SqlBackend) -> Iterator[Connection]:
    """A connection of our own, to read the backend's tables directly."""
    url = _urls[backend.table_prefix]
    if url not in _engines:
        _engines[url] = create_engine(url)
    with _engines[url].connect() as conn:
        yield conn
        conn.rollback()


def started_and_created(
    backend: SqlBackend, task_name: str
) -> list[tuple[float, float]]:
    """(body start, job created_at) of every job that ran ``task_name``."""
    jobs, iterations = backend.tables.jobs, backend.tables.job_iterations
    query = select(iterations.c.output, jobs.c.created_at).join(
        jobs, jobs.c.id == iterations.c.job_id
    )
    query = query.where(iterations.c.task_name == task_name)
    with backend_connection(backend) as conn:
        rows = conn.execute(query).all()
    return [(json.loads(row.output)["started"], row.created_at) for row in rows]


def failed_count(backend: SqlBackend) -> int:
    return sum(1 for job in backend.jobs() if job.status == "failed")


# -- the three measurements --


def enqueue_noops(backend: SqlBackend, count: int) -> None:
    for start in range(0, count, ENQUEUE_CHUNK):
        size = min(ENQUEUE_CHUNK, count - start)
        specs = [NewJob(workflow=Noop.name, arguments={}) for _ in range(size)]
        backend.enqueue(specs, time.time())


def single(backend: SqlBackend, url: str, processes: int, s: Settings) -> str:
    enqueue_noops(backend, s.jobs)
    with worker(backend, url, processes, s):
        wait_until(lambda: settled_count(backend) >= s.jobs, "the workflows")
    starts = [started for started, _ in started_and_created(backend, "run")]
    jobs = backend.tables.jobs
    with backend_connection(backend) as conn:
        last = float(conn.execute(select(func.max(jobs.c.finished_at))).scalar_one())
    elapsed = last - min(starts)
    failed = failed_count(backend)
    return row(f"{s.jobs:,} single-task workflows", s.jobs, elapsed, failed)


def fan_out(backend: SqlBackend, url: str, processes: int, s: Settings) -> str:
    with worker(backend, url, processes, s):
        workers_up(backend, processes)
        enqueued = time.time()
        handle = Map.set(backend=backend).perform_later(n=s.map_size)

        def done() -> bool:
            job = backend.get_job(handle.job_id)
            return job is not None and job.status in ("finished", "failed")

        wait_until(done, "the map workflow")
    parent = backend.get_job(handle.job_id)
    assert parent is not None
    assert parent.finished_at is not None
    elapsed = parent.finished_at - enqueued
    failed = failed_count(backend)
    return row(f"1 workflow, map of {s.map_size:,}", s.map_size + 1, elapsed, failed)


def latency(backend: SqlBackend, url: str, processes: int, s: Settings) -> str:
    caller = Noop.set(backend=backend)
    with worker(backend, url, processes, s):
        workers_up(backend, processes)
        begin = time.monotonic()
        for n in range(s.latency_jobs):
            pause = begin + n / s.latency_rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            caller.perform_later()
        wait_until(lambda: settled_count(backend) >= s.latency_jobs, "latency jobs")
    waits = sorted(
        (started - created) * 1000
        for started, created in started_and_created(backend, "run")
    )
    median = statistics.median(waits)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return (
        f"  claim latency, {s.latency_jobs} workflows at {s.latency_rate:g}/s: "
        f"median {median:6.1f} ms, p99 {p99:6.1f} ms, max {waits[-1]:6.1f} ms"
    )


def row(label: str, jobs: int, elapsed: float, failed: int) -> str:
    note = f"  ({failed} FAILED)" if failed else ""
    return (
        f"  {label:<32} {jobs:>7,} jobs {elapsed:7.2f} s "
        f"{jobs / elapsed:8,.0f} jobs/s{note}"
    )


Measurement = Callable[[SqlBackend, str, int, Settings], str]


def measure(url: str, processes: int, what: Measurement, s: Settings) -> None:
    backend = SqlBackend(url, table_prefix=f"jw_b{secrets.token_hex(3)}_")
    backend.create_schema()
    _urls[backend.table_prefix] = url
    try:
        print(what(backend, url, processes, s), flush=True)
    finally:
        backend.drop_schema()
        backend.close()


def database_url(name: str, postgres_url: str, directory: Path) -> str:
    if name == "sqlite":
        return f"sqlite:///{directory / 'bench.sqlite3'}"
    if name == "postgresql":
        return postgres_url
    raise SystemExit(f"unknown database {name!r}: expected postgresql or sqlite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--map", dest="map_size", type=int, default=10_000)
    parser.add_argument("--latency-jobs", type=int, default=500)
    parser.add_argument("--latency-rate", type=float, default=100.0)
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--polling-interval", type=float, default=None)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("JOB_WORKFLOW_TEST_POSTGRES_URL") or DEFAULT_POSTGRES,
    )
    parser.add_argument(
        "--only", default="single,map,latency", help="which measurements to run"
    )
    args = parser.parse_args()
    settings = Settings(
        jobs=args.jobs,
        map_size=args.map_size,
        latency_jobs=min(args.latency_jobs, args.jobs),
        latency_rate=args.latency_rate,
        threads=args.threads,
        polling_interval=args.polling_interval,
    )
    chosen: dict[str, Measurement] = {
        "single": single,
        "map": fan_out,
        "latency": latency,
    }
    measurements = [chosen[name] for name in args.only.split(",")]
    with tempfile.TemporaryDirectory() as directory:
        for name in args.databases.split(","):
            url = database_url(name, args.postgres_url, Path(directory))
            for processes in (int(p) for p in args.processes.split(",")):
                print(f"{name}, {processes} process(es) x {args.threads} threads")
                for what in measurements:
                    measure(url, processes, what, settings)


if __name__ == "__main__":
    main()
