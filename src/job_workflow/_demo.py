"""``job-workflow demo``: the whole product on one example workflow, on SQLite.

1. draw the workflow's graph;
2. dry-run it: what would run, fan out and be held back;
3. simulate it on a virtual clock over many seeds with injected faults;
4. run it for real: a SQLite database, a supervisor with two worker
   processes, three workflows enqueued, their final statuses and outputs.

Everything it writes goes to ``out/demo/`` (or the directory given).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from job_workflow import WorkflowStatus, dry_run
from job_workflow._demo_flows import OrderReport
from job_workflow.backends.sql import SqlBackend
from job_workflow.simulator import Faults, Simulation
from job_workflow.viz import render, to_mermaid

OUT = Path("out") / "demo"
REGIONS = ["north", "south", "east", "west", "central"]
SEEDS = 300
FAULTS = Faults(task_errors=0.1, crashes=0.03, slow_tasks=0.1, duplicate_delivery=0.02)


def title(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def show_graph() -> None:
    title("1. The workflow")
    print(OrderReport.__doc__)
    for task in OrderReport.tasks:
        needs = ", ".join(task.depends_on) or "-"
        print(f"  {task.name:<14} after: {needs}")
    (OUT / "order_report.mmd").write_text(to_mermaid(OrderReport))
    if shutil.which("dot"):
        render(OrderReport, OUT / "order_report.svg", format="svg")
        print(f"graph written to {OUT / 'order_report.svg'} (and .mmd)")
    else:
        print(f"graph written to {OUT / 'order_report.mmd'} (install graphviz for SVG)")


def show_dry_run() -> None:
    title("2. Dry run: what would happen, side effects held back")
    report = dry_run(OrderReport, regions=REGIONS)
    print(report)


def simulate() -> None:
    title(f"3. Simulation: {SEEDS} seeds, 4 workers, faults injected")
    print(f"faults: {FAULTS}")
    started = time.perf_counter()
    failures: list[str] = []
    jobs = virtual = 0.0
    for seed in range(SEEDS):
        sim = Simulation(workers=4, seed=seed, faults=FAULTS)
        for _ in range(3):
            sim.enqueue(OrderReport, regions=REGIONS)
        result = sim.run_until_idle()
        jobs += len(result.backend.jobs())
        virtual += result.metrics.makespan
        try:
            result.check()
        except AssertionError as exc:
            failures.append(f"seed {seed}: {exc}")
        _progress(seed + 1, SEEDS)
    wall = time.perf_counter() - started
    print(
        f"\n{SEEDS} simulations, {int(jobs):,} simulated jobs, "
        f"{virtual / 3600:.1f} virtual hours in {wall:.1f} s of wall time"
    )
    if failures:
        print("invariant violations:\n  " + "\n  ".join(failures[:5]))
    else:
        print("every invariant held for every seed (check() passed)")


def _progress(done: int, total: int) -> None:
    if done % 10 and done != total:
        return
    width = 40
    filled = width * done // total
    sys.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stdout.flush()


def run_for_real() -> None:
    title("4. For real: SQLite, a supervisor and two worker processes")
    database = OUT / "demo.sqlite3"
    for stale in OUT.glob("demo.sqlite3*"):
        stale.unlink()
    url = f"sqlite:///{database}"
    backend = SqlBackend(url)
    backend.create_schema()
    calls = OrderReport.set(backend=backend)
    handles = [
        calls.perform_later(regions=REGIONS),
        calls.perform_later(regions=["north", "east"], orders_per_region=10),
        calls.perform_later(regions=["atlantis"]),
    ]
    print(f"enqueued {len(handles)} workflows into {database}")
    worker = _start_worker(url)
    try:
        _wait_until_done(backend, [h.job_id for h in handles], seconds=90)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        print(f"worker stopped with exit code {code} after SIGTERM")
    for handle in handles:
        _print_status(WorkflowStatus.find(handle.job_id, backend=backend))
    backend.close()


def _start_worker(url: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "job_workflow.cli", "worker",
        "--database-url", url, "--import", "job_workflow._demo_flows",
        "--processes", "2", "--threads", "3", "--polling-interval", "0.05",
    ]  # fmt: skip
    print("$ job-workflow " + " ".join(command[3:]))
    return subprocess.Popen(command)


def _wait_until_done(backend: SqlBackend, job_ids: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses = [WorkflowStatus.find(j, backend=backend).status for j in job_ids]
        if all(s in ("succeeded", "failed") for s in statuses):
            return
        time.sleep(0.2)  # a demo polling a database, not a test
    raise SystemExit(f"the workflows did not finish within {seconds} s")


def _print_status(status: WorkflowStatus) -> None:
    args = status.to_dict()["arguments"]
    print(f"\n{status.job_id}  {status.status.upper():<9}  arguments {args}")
    if status.error is not None:
        print(f"  error: {status.error.error_class}: {status.error.message}")
    for task, outputs in status.output.items():
        for output in outputs:
            print(f"  {task:<13} {output.data}")


def main(out: Path | None = None) -> None:
    global OUT
    OUT = out or OUT
    OUT.mkdir(parents=True, exist_ok=True)
    show_graph()
    show_dry_run()
    simulate()
    run_for_real()
    print("\ndone: see docs/README.md for the guides")


if __name__ == "__main__":
    main()
