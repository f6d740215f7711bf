"""The ``simulate`` command of the CLI: one workflow over a range of seeds.

Each seed is one deterministic simulation (``Simulation(workers, seed,
faults, durations).run(Workflow, **args)``) followed by ``check()``. A
progress bar goes to stderr (plain text, redrawn with ``\\r``); the command
stops at the first seed that breaks an invariant and prints that seed, the
violation and a command line that replays exactly that run.

``--timeline FILE`` writes the SVG timeline (``job_workflow.viz.timeline``)
of the first failing seed, or of the last seed when every seed passes; a
seed that crashed the simulation itself has no result to draw, which a note
on stderr says.

Exit codes: 0 when every seed passes, 1 at the first failing seed, 2 for bad
input (a bad ``--seeds`` range, bad JSON, an unknown fault name, arguments
the workflow rejects, a ``--timeline`` in a missing directory), always as
one ``job-workflow: error: ...`` line.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

from job_workflow.cli import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    _examples,
    _json_arguments,
    _one_line,
    load_workflow,
)
from job_workflow.core import _arguments
from job_workflow.core._workflow import Workflow
from job_workflow.errors import ArgumentValidationError, InvariantViolation
from job_workflow.simulator import Faults, Simulation, SimulationResult

_SEEDS = re.compile(r"^\s*(\d+)\s*(?:\.\.\s*(\d+)\s*)?$")
_FAULT_NAMES = tuple(f.name for f in fields(Faults))
BAR_WIDTH = 30
MAX_REDRAWS = 200  # a long range redraws the bar this often, not every seed


def register(commands: Any) -> None:
    """Add ``simulate`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "simulate",
        help="run a workflow in the simulator over many seeds and check each",
        description=(
            "Run a workflow on simulated workers in virtual time, once per "
            "seed, and check every invariant after each run (dependency order, "
            "throttle and concurrency limits, retry bounds, no job lost or "
            "stuck, no deadlock, outputs equal to perform_now). Stops at the "
            "first failing seed and prints it with a command line to replay "
            "it. Exits 0 when every seed passes, 1 on a failure."
        ),
        epilog=_examples(
            "job-workflow simulate shop.workflows:Checkout --args '{\"order_id\": 7}'",
            "job-workflow simulate shop.workflows:Checkout --args '{}' "
            "--workers 8 --seeds 0..999 --faults task_errors=0.1,crashes=0.05",
            "job-workflow simulate shop.workflows:Checkout --args '{}' "
            "--faults crashes=0.2,crash_points=before_body+before_enqueue",
            "job-workflow simulate shop.workflows:Checkout --args '{}' "
            '--durations \'{"charge": 30, "ship": 5}\'',
            "job-workflow simulate shop.workflows:Checkout --args '{}' "
            "--faults crashes=0.1 --timeline run.svg",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workflow", metavar="MODULE:Workflow")
    parser.add_argument(
        "--args",
        metavar="JSON",
        default="{}",
        help="the workflow's arguments as a JSON object (default: {})",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=_workers,
        default=4,
        help="simulated workers (default: 4)",
    )
    parser.add_argument(
        "--seeds",
        metavar="A..B",
        default="0..99",
        help="seeds to run, both ends included, or one seed (default: 0..99)",
    )
    parser.add_argument(
        "--faults",
        metavar="NAME=VALUE,...",
        default="",
        help=(
            "faults to inject: "
            + ", ".join(_FAULT_NAMES)
            + "; crash_points takes names joined by '+' (default: none)"
        ),
    )
    parser.add_argument(
        "--durations",
        metavar="JSON",
        default=None,
        help="task durations in virtual seconds: one number, or an object of "
        "task name to number (default: 1 s each)",
    )
    parser.add_argument(
        "--timeline",
        metavar="FILE",
        default=None,
        help="write the SVG timeline of the first failing seed (of the last "
        "seed when all pass) to FILE; needs the viz extra",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run every seed of the range; print the first failure, or a summary."""
    plan = _Plan.from_args(args)
    progress = _Progress(len(plan.seeds), sys.stderr)
    results: list[SimulationResult] = []
    for done, seed in enumerate(plan.seeds, start=1):
        result, failure = plan.attempt(seed)
        progress.update(done)
        if failure is not None:
            progress.close()
            print(failure)
            plan.write_timeline(seed, result)
            return EXIT_FAILURE
        assert result is not None
        results.append(result)
    progress.close()
    print(plan.summary(results))
    plan.write_timeline(plan.seeds[-1], results[-1])
    return EXIT_OK


# -- the plan: everything parsed and checked before the first run --


@dataclass(frozen=True)
class _Plan:
    args: argparse.Namespace
    workflow: type[Workflow]
    arguments: dict[str, Any]
    seeds: range
    faults: Faults
    durations: float | dict[str, float] | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> _Plan:
        check_timeline(getattr(args, "timeline", None))
        seeds = parse_seeds(args.seeds)
        faults = parse_faults(args.faults)
        durations = parse_durations(args.durations)
        workflow = load_workflow(args.workflow)
        arguments = _json_arguments(workflow, args.args)
        try:
            _arguments.validate(workflow.arguments, arguments, workflow.name)
        except ArgumentValidationError as exc:
            raise CommandError(str(exc), EXIT_USAGE) from None
        return cls(args, workflow, arguments, seeds, faults, durations)

    def simulate(self, seed: int) -> SimulationResult:
        sim = Simulation(
            workers=self.args.workers,
            seed=seed,
            faults=self.faults,
            durations=self.durations,
        )
        return sim.run(self.workflow, **self.arguments)

    def attempt(self, seed: int) -> tuple[SimulationResult | None, str | None]:
        """Run one seed: its result (None if the simulation itself raised)
        and the report to print if it fails (None when it passes)."""
        try:
            result = self.simulate(seed)
        except Exception as exc:
            return None, self._report(seed, "crashed the simulation", _one_line(exc))
        try:
            result.check()
        except InvariantViolation as exc:
            return result, self._report(seed, "broke an invariant", str(exc))
        except Exception as exc:
            return result, self._report(seed, "crashed the simulation", _one_line(exc))
        return result, None

    def write_timeline(self, seed: int, result: SimulationResult | None) -> None:
        """Write ``--timeline`` (if asked for) from the seed's result."""
        path = getattr(self.args, "timeline", None)
        if path is None:
            return
        if result is None:
            print(
                f"job-workflow: note: no timeline written: seed {seed} crashed the "
                "simulation before it returned a result",
                file=sys.stderr,
            )
            return
        try:
            from job_workflow.viz import timeline
        except ImportError as exc:
            raise CommandError(str(exc)) from None
        try:
            timeline(result, path)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(f"wrote {path} (timeline of seed {seed})")

    def _report(self, seed: int, what: str, message: str) -> str:
        passed = seed - self.seeds.start
        body = "\n".join(f"  {line}" for line in message.splitlines())
        return (
            f"seed {seed} {what} (after {passed} passing seed"
            f"{'' if passed == 1 else 's'}):\n{body}\n"
            f"replay:\n  {self.replay_command(seed)}\n"
            f"or in Python:\n  {self.replay_python(seed)}"
        )

    def replay_command(self, seed: int) -> str:
        argv = ["job-workflow", "simulate", self.args.workflow]
        argv += ["--args", self.args.args, "--workers", str(self.args.workers)]
        argv += ["--seeds", str(seed)]
        if self.args.faults:
            argv += ["--faults", self.args.faults]
        if self.args.durations is not None:
            argv += ["--durations", self.args.durations]
        return shlex.join(argv)

    def replay_python(self, seed: int) -> str:
        module, _, name = self.args.workflow.partition(":")
        return (
            "from job_workflow.simulator import Faults, Simulation; "
            f"from {module} import {name.split('.')[0]}; "
            f"Simulation(workers={self.args.workers}, seed={seed}, "
            f"faults={faults_repr(self.faults)}, durations={self.durations!r})"
            f".run({name}, **{self.arguments!r}).check()"
        )

    def summary(self, results: list[SimulationResult]) -> str:
        statuses = [s for result in results for s in result.statuses.values()]
        makespans = [result.metrics.makespan for result in results]
        first, last = self.seeds.start, self.seeds.stop - 1
        seeds = f"seed {first}" if first == last else f"seeds {first}..{last}"
        faults = faults_repr(self.faults) if self.faults.any else "no faults"
        return (
            f"{len(results)} seed{'' if len(results) == 1 else 's'} passed "
            f"check() ({seeds}, {self.args.workers} workers, {faults})\n"
            f"workflows: {statuses.count('succeeded')} succeeded, "
            f"{statuses.count('failed')} failed; virtual makespan "
            f"{min(makespans):g}..{max(makespans):g} s"
        )


# -- parsing --


def check_timeline(path: str | None) -> None:
    """Fail before the first run when ``--timeline``'s folder does not exist."""
    if path is None:
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise CommandError(
            f"--timeline {path}: the directory {str(folder)!r} does not exist",
            EXIT_USAGE,
        )


def parse_seeds(text: str) -> range:
    """``"A..B"`` (both ends included) or ``"N"`` as a range of seeds."""
    match = _SEEDS.match(text)
    if match is None:
        raise CommandError(
            f"--seeds expects A..B such as 0..99, or one seed, got {text!r}",
            EXIT_USAGE,
        )
    start = int(match.group(1))
    end = int(match.group(2) or start)
    if end < start:
        raise CommandError(
            f"--seeds {text}: the range ends before it starts (use {end}..{start})",
            EXIT_USAGE,
        )
    return range(start, end + 1)


def parse_faults(text: str) -> Faults:
    """``name=value,...`` as :class:`Faults`; crash_points joined by ``+``."""
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = item.partition("=")
        name = name.strip()
        if name not in _FAULT_NAMES:
            raise CommandError(
                f"--faults: unknown fault {name!r}; known: {', '.join(_FAULT_NAMES)}",
                EXIT_USAGE,
            )
        if not equals or not value.strip():
            raise CommandError(
                f"--faults: {name} needs a value ({name}=...)", EXIT_USAGE
            )
        values[name] = _fault_value(name, value.strip())
    try:
        return Faults(**values)
    except ValueError as exc:
        raise CommandError(f"--faults: {exc}", EXIT_USAGE) from None


def _fault_value(name: str, text: str) -> Any:
    if name == "crash_points":
        return tuple(point.strip() for point in text.split("+"))
    try:
        return float(text)
    except ValueError:
        raise CommandError(
            f"--faults: {name} expects a number, got {text!r}", EXIT_USAGE
        ) from None


def parse_durations(text: str | None) -> float | dict[str, float] | None:
    """A JSON number, or an object of task name to number, of seconds >= 0."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"--durations is not valid JSON: {exc}", EXIT_USAGE
        ) from None
    if _seconds(data):
        return float(data)
    if isinstance(data, dict) and all(_seconds(v) for v in data.values()):
        return {str(task): float(seconds) for task, seconds in data.items()}
    raise CommandError(
        "--durations expects a number of seconds >= 0 or an object such as "
        f"'{{\"charge\": 30}}', got {text!r}",
        EXIT_USAGE,
    )


def _seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 worker, got {value}")
    return value


def faults_repr(faults: Faults) -> str:
    """``Faults(...)`` naming only the fields that differ from the defaults."""
    default = Faults()
    changed = [
        f"{f.name}={getattr(faults, f.name)!r}"
        for f in fields(faults)
        if getattr(faults, f.name) != getattr(default, f.name)
    ]
    return f"Faults({', '.join(changed)})"


# -- the progress bar --


class _Progress:
    """``simulate [#####.....] 12/100 seeds`` on one line, redrawn in place."""

    def __init__(self, total: int, stream: IO[str]) -> None:
        self._total = total
        self._stream = stream
        self._step = max(1, total // MAX_REDRAWS)
        self._write: Callable[[str], Any] = stream.write

    def update(self, done: int) -> None:
        if done % self._step and done != self._total:
            return
        filled = BAR_WIDTH * done // self._total
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self._write(f"\rsimulate [{bar}] {done}/{self._total} seeds")
        self._stream.flush()

    def close(self) -> None:
        self._write("\n")
        self._stream.flush()
