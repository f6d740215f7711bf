"""Hypothesis strategies for the simulator: workflows, fault plans, scenarios.

- :func:`workflows` draws random valid :class:`Workflow` classes that use
  every ``@task`` option (map tasks over an argument list, sub-jobs with a
  concurrency limit, retries with jitter, outputs, conditions, throttles on
  private and shared keys, timeouts, every ``dependency_wait`` form, dry
  runs). Task bodies are pure functions of the arguments, the iteration and
  the outputs of their dependencies, so a simulated run must produce the
  outputs of a plain ``perform_now``; a body may fail its first attempts on
  purpose, never more often than its retries allow.
- :func:`fault_plans` draws :class:`Faults` with small probabilities.
- :func:`simulations` draws a whole :class:`Scenario` (workflows with their
  arguments, workers, seed, faults, durations); ``scenario.run()`` returns a
  :class:`SimulationResult`.

A drawn workflow is data first (:class:`WorkflowSpec`, :class:`TaskSpec`)
and a class second (:meth:`WorkflowSpec.build`), so a scenario's ``repr`` is
Python that rebuilds it: paste it after
``from job_workflow.simulator.strategies import *`` and call ``.run()``.
:func:`check_scenario` runs a scenario and, when ``check()`` fails, adds
exactly that replay text to the :class:`InvariantViolation`.

The simulator's only random source is ``random.Random(seed)`` with the seed
drawn by hypothesis, so shrinking and replay (including hypothesis' example
database) see every random decision of a run; nothing here creates a random
source of its own, so there is nothing to ``register_random``.

What the strategies steer around, and why: a scenario whose workflows may
wait by polling only gets more workers than workflows and no duplicate
delivery (which could put two polling copies of one parent on two
workers), so a deadlock is a bug rather than the guide's starvation, which
the tests build on purpose; and ``lease_expiry`` (see :func:`fault_plans`).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hypothesis import strategies as st

from job_workflow.core._arguments import argument
from job_workflow.core._options import DependencyWait, RetryPolicy
from job_workflow.core._task import task
from job_workflow.core._workflow import Workflow, registry
from job_workflow.errors import InvariantViolation, UnknownWorkflowError
from job_workflow.simulator._faults import CRASH_POINTS, Faults
from job_workflow.simulator._result import SimulationResult
from job_workflow.simulator._simulation import Simulation

__all__ = [
    "PREDICATES",
    "SHARED_THROTTLES",
    "FlakyTaskError",
    "Scenario",
    "TaskSpec",
    "UniformDuration",
    "WorkflowSpec",
    "arguments",
    "check_scenario",
    "durations",
    "fault_plans",
    "simulations",
    "task_specs",
    "workflow_specs",
    "workflows",
]

NAME_PREFIX = "jw_sim"
MODULUS = 1_000_003  # keeps outputs small whatever the graph's depth

# Callable option values are named, so a spec stays plain, printable data.
# Each entry: the source shown in descriptions, and the function itself.
PREDICATES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "always": ("lambda ctx: True", lambda ctx: True),
    "never": ("lambda ctx: False", lambda ctx: False),
    "even_items": (
        "lambda ctx: len(ctx.arguments.items) % 2 == 0",
        lambda ctx: len(ctx.arguments.items) % 2 == 0,
    ),
    "odd_factor": (
        "lambda ctx: ctx.arguments.factor % 2 == 1",
        lambda ctx: ctx.arguments.factor % 2 == 1,
    ),
    "small_sum": (
        "lambda ctx: sum(ctx.arguments.items) < 10",
        lambda ctx: sum(ctx.arguments.items) < 10,
    ),
}

# Keys shared by every drawn workflow; a key always comes with one limit,
# because tasks disagreeing on a key's limit make the limit itself ambiguous.
SHARED_THROTTLES: dict[str, int] = {
    "jw-sim:shared-1": 1,
    "jw-sim:shared-2": 2,
    "jw-sim:shared-3": 3,
}

# Every lease outlives the slowest body a scenario can draw (durations at most
# MAX_DURATION, slowed at most MAX_SLOW_FACTOR times): a lease that runs out
# under a live holder is the separate ``lease_expiry`` fault.
MAX_DURATION = 5.0
MAX_SLOW_FACTOR = 10.0
MIN_THROTTLE_TTL = 120.0


class FlakyTaskError(Exception):
    """Raised by a drawn task body on purpose during its first attempts."""


# -- workflow structure as data --


@dataclass(frozen=True)
class TaskSpec:
    """One drawn task: the ``@task`` options, with callables named by string.

    A ``str`` where an option takes a callable names an entry of
    :data:`PREDICATES`; ``each=True`` maps over ``ctx.arguments.items``;
    ``output=True`` declares ``{"value": int}``. ``flaky`` is how many first
    attempts of each iteration raise :class:`FlakyTaskError`; ``salt`` makes
    the outputs of otherwise equal tasks differ.
    """

    name: str
    depends_on: tuple[str, ...] = ()
    each: bool = False
    enqueue: Any = None
    retry: Any = None
    output: bool = True
    condition: str | None = None
    throttle: Any = None
    timeout: float | None = None
    dependency_wait: Any = None
    dry_run: bool | str = False
    flaky: int = 0
    salt: int = 0

    def __repr__(self) -> str:
        return _spec_repr(self, first=("name",))

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``task(...)``, with predicates resolved."""
        options: dict[str, Any] = {"name": self.name}
        options["depends_on"] = list(self.depends_on)
        if self.each:
            options["each"] = _each_items
        if self.enqueue is not None:
            options["enqueue"] = _resolve(self.enqueue)
        if self.retry is not None:
            options["retry"] = self.retry
        if self.output:
            options["output"] = {"value": int}
        if self.condition is not None:
            options["condition"] = _predicate(self.condition)
        if self.throttle is not None:
            options["throttle"] = self.throttle
        if self.timeout is not None:
            options["timeout"] = self.timeout
        if self.dependency_wait is not None:
            options["dependency_wait"] = self.dependency_wait
        options["dry_run"] = _resolve(self.dry_run)
        return options

    @property
    def polls_forever(self) -> bool:
        """Waits on a dependency by polling only (can starve its workers)."""
        return bool(self.depends_on) and (
            DependencyWait.from_option(self.dependency_wait).polling_only
        )

    def describe(self) -> str:
        """The task as it would be written in a class body."""
        shown = []
        for key, value in self.options().items():
            if key == "name" or (key == "depends_on" and not value):
                continue
            if key == "dry_run" and value is False:
                continue
            shown.append(f"{key}={self._source(key)}")
        body = "fails its first attempt" if self.flaky == 1 else ""
        if self.flaky > 1:
            body = f"fails its first {self.flaky} attempts"
        note = f"  # salt={self.salt}" + (f", {body}" if body else "")
        return (
            f"    @task({', '.join(shown)})\n    def {self.name}(self, ctx): ...{note}"
        )

    def _source(self, key: str) -> str:
        if key == "each":
            return "lambda ctx: ctx.arguments.items"
        if key == "output":
            return "{'value': int}"
        value = getattr(self, key)
        if key == "depends_on":
            return repr(list(value))
        return _source(value)


@dataclass(frozen=True)
class WorkflowSpec:
    """One drawn workflow: its tasks, queue and workflow-level ``dry_run``.

    The class name is a hash of the structure, so one structure is one class
    (rebuilding it replaces the registry entry) and names never collide.
    """

    tasks: tuple[TaskSpec, ...]
    queue: str = "default"
    dry_run: bool | str = False

    def __repr__(self) -> str:
        return _spec_repr(self, first=("tasks",))

    @property
    def qualname(self) -> str:
        digest = hashlib.sha256(repr(self).encode()).hexdigest()
        return f"W{digest[:12]}"

    @property
    def name(self) -> str:
        return f"{NAME_PREFIX}.{self.qualname}"

    @property
    def polls_forever(self) -> bool:
        return any(t.polls_forever for t in self.tasks)

    def build(self) -> type[Workflow]:
        """The workflow class (built once, then taken from the registry)."""
        try:
            cls = registry.get(self.name)
        except UnknownWorkflowError:
            return _build(self)
        if getattr(cls, "jw_spec", None) == self:
            return cls
        return _build(self)  # pragma: no cover - a hash collision

    def describe(self) -> str:
        """The workflow as a class statement (bodies summarised)."""
        lines = [
            f"class {self.qualname}(Workflow):",
            f"    name = {self.name!r}",
        ]
        if self.queue != "default":
            lines.append(f"    queue = {self.queue!r}")
        if self.dry_run is not False:
            lines.append(f"    dry_run = {_source(self.dry_run)}")
        lines += [
            "    items = argument(list[int])",
            "    factor = argument(int, default=2)",
        ]
        lines += ["", *(t.describe() for t in self.tasks)]
        return "\n".join(lines)


@dataclass(frozen=True)
class UniformDuration:
    """A task duration drawn uniformly from the simulation's random source."""

    low: float
    high: float

    def __call__(self, ctx: Any, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


Durations = float | dict[str, float | UniformDuration] | None


@dataclass(frozen=True)
class Scenario:
    """Everything one simulated run needs; ``repr`` is Python that rebuilds it."""

    workflows: tuple[tuple[WorkflowSpec, dict[str, Any]], ...]
    workers: int
    seed: int
    faults: Faults = field(default_factory=Faults)
    durations: Durations = None

    def simulation(self) -> Simulation:
        """A fresh simulation with this scenario's workflows enqueued."""
        sim = Simulation(
            workers=self.workers,
            seed=self.seed,
            faults=self.faults,
            durations=self.durations,
        )
        for spec, values in self.workflows:
            sim.enqueue(spec.build(), **values)
        return sim

    def run(self) -> SimulationResult:
        """Run the scenario until idle (or deadlocked) and return the result."""
        return self.simulation().run_until_idle()

    def __repr__(self) -> str:
        runs = "".join(
            f"        ({spec!r}, {values!r}),\n" for spec, values in self.workflows
        )
        return (
            "Scenario(\n"
            f"    workflows=(\n{runs}    ),\n"
            f"    workers={self.workers!r},\n"
            f"    seed={self.seed!r},\n"
            f"    faults={faults_repr(self.faults)},\n"
            f"    durations={self.durations!r},\n"
            ")"
        )

    def describe(self) -> str:
        """The workflows as class statements, then what runs them."""
        specs = list(dict.fromkeys(spec.qualname for spec, _ in self.workflows))
        by_name = {spec.qualname: spec for spec, _ in self.workflows}
        runs = ", ".join(
            f"{spec.qualname}({_kwargs(values)})" for spec, values in self.workflows
        )
        return "\n\n".join(
            [
                *(by_name[name].describe() for name in specs),
                f"# runs: {runs}\n# workers={self.workers} seed={self.seed} "
                f"faults={faults_repr(self.faults)} durations={self.durations!r}",
            ]
        )

    def replay_text(self) -> str:
        """How to run this scenario again, to paste into a test or a REPL."""
        return (
            f"{self.describe()}\n\n"
            "Replay it with:\n\n"
            "from job_workflow.simulator import Faults\n"
            "from job_workflow.simulator.strategies import *\n"
            f"scenario = {self!r}\n"
            "scenario.run().check()"
        )


def check_scenario(scenario: Scenario) -> SimulationResult:
    """Run ``scenario`` and ``check()`` it; a violation carries the replay text."""
    result = scenario.run()
    try:
        result.check()
    except InvariantViolation as exc:
        raise InvariantViolation(f"{exc}\n\n{scenario.replay_text()}") from exc
    return result


def faults_repr(faults: Faults) -> str:
    """``Faults(...)`` naming only the fields that differ from the defaults."""
    default = Faults()
    changed = [
        f"{f.name}={getattr(faults, f.name)!r}"
        for f in fields(faults)
        if getattr(faults, f.name) != getattr(default, f.name)
    ]
    return f"Faults({', '.join(changed)})"


# -- building classes from specs --


def _build(spec: WorkflowSpec) -> type[Workflow]:
    body: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": spec.qualname,
        "__doc__": f"A drawn workflow.\n\n{spec.describe()}",
        "name": spec.name,
        "queue": spec.queue,
        "dry_run": _resolve(spec.dry_run),
        "jw_spec": spec,
        "items": argument(list[int]),
        "factor": argument(int, default=2),
    }
    if callable(body["dry_run"]):
        body["dry_run"] = staticmethod(body["dry_run"])
    for task_spec in spec.tasks:
        body[task_spec.name] = task(**task_spec.options())(_body(task_spec))
    cls = type(spec.qualname, (Workflow,), body)
    return cls


def _body(spec: TaskSpec) -> Callable[[Any, Any], Any]:
    """A deterministic body: its output depends only on what ctx offers."""

    def body(self: Any, ctx: Any) -> Any:
        if ctx.retry_count < spec.flaky:
            raise FlakyTaskError(
                f"{spec.name} fails attempt {ctx.retry_count + 1} on purpose"
            )
        value = _value(spec, ctx)
        return {"value": value} if spec.output else None

    body.__name__ = body.__qualname__ = spec.name
    return body


def _value(spec: TaskSpec, ctx: Any) -> int:
    arguments = ctx.arguments
    total = spec.salt + sum(arguments.items) * arguments.factor
    if spec.each:
        total += (ctx.each_index + 1) * ctx.each_value
    for position, dependency in enumerate(spec.depends_on, start=2):
        total += position * sum(o.value for o in ctx.output[dependency])
    total += ctx.skip_in_dry_run(lambda: 7, fallback=3)
    return int(total % MODULUS)


def _each_items(ctx: Any) -> list[int]:
    return list(ctx.arguments.items)


def _predicate(name: str) -> Callable[[Any], bool]:
    return PREDICATES[name][1]


def _resolve(value: Any) -> Any:
    """Option value with predicate names (also inside dicts) made callable."""
    if isinstance(value, str):
        return _predicate(value)
    if isinstance(value, dict):
        return {k: _resolve(v) if k == "condition" else v for k, v in value.items()}
    return value


def _source(value: Any) -> str:
    """Python source of an option value, predicate names shown as lambdas."""
    if isinstance(value, str):
        return PREDICATES[value][0]
    if isinstance(value, dict):
        items = ", ".join(
            f"{k!r}: {_source(v) if k == 'condition' else repr(v)}"
            for k, v in value.items()
        )
        return f"{{{items}}}"
    return repr(value)


def _spec_repr(spec: Any, first: tuple[str, ...]) -> str:
    """Constructor call naming the required and the non-default fields."""
    parts = []
    for f in fields(spec):
        value = getattr(spec, f.name)
        if f.name in first or value != f.default:
            parts.append(f"{f.name}={value!r}")
    return f"{type(spec).__name__}({', '.join(parts)})"


def _kwargs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


# -- strategies --
#
# Option strategies are built once, here: building (and validating) them
# inside every draw costs hypothesis more than running the simulation.

_SECONDS = st.sampled_from([0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
_BOOLEANS = st.booleans()
_RETRY: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.integers(0, 3),
    st.fixed_dictionaries(
        {"count": st.integers(0, 3)},
        optional={
            "strategy": st.sampled_from(["linear", "exponential"]),
            "base_delay": st.sampled_from([0, 1, 5, 30]),
            "jitter": st.booleans(),
        },
    ),
)
_ENQUEUE: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["even_items", "small_sum"]),
    st.fixed_dictionaries(
        {},
        optional={
            "condition": st.sampled_from(["always", "even_items", "odd_factor"]),
            "queue": st.sampled_from(["default", "sub"]),
            "concurrency": st.integers(1, 3),
        },
    ),
)
_THROTTLE: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.integers(1, 3),
    st.sampled_from(sorted(SHARED_THROTTLES)),  # a shared key, see _throttle
)
_THROTTLE_TTL = st.sampled_from([None, MIN_THROTTLE_TTL, 180.0, 600.0])
_RESCHEDULING: st.SearchStrategy[Any] = st.one_of(
    st.integers(1, 60),
    st.fixed_dictionaries(
        {"poll_timeout": st.sampled_from([1, 5, 30])},
        optional={
            "poll_interval": _SECONDS,
            "reschedule_delay": st.sampled_from([0, 1, 5, 30]),
        },
    ),
)
_DEPENDENCY_WAIT: dict[bool, st.SearchStrategy[Any]] = {
    False: _RESCHEDULING,
    True: st.one_of(
        st.none(),
        st.just({}),
        st.just(0),
        st.fixed_dictionaries({"poll_timeout": st.just(0), "poll_interval": _SECONDS}),
        _RESCHEDULING,
    ),
}
_CONDITION = st.none() | st.sampled_from(["even_items", "odd_factor"])
_TIMEOUT = st.none() | st.sampled_from([60.0, 3600.0])
_DRY_RUN = st.booleans() | st.sampled_from(["odd_factor", "never"])
_FLAKY = [st.integers(0, n) for n in range(3)]
_SALT = st.integers(0, 99)
_QUEUE = st.sampled_from(["default", "etl"])
_WORKFLOW_DRY_RUN: st.SearchStrategy[bool | str] = st.sampled_from(
    [False, True, "odd_factor"]
)


def _probability(maximum: float) -> st.SearchStrategy[float]:
    hundredths = round(maximum * 100)
    return st.integers(0, hundredths).map(lambda n: n / 100)


def _throttle(draw: st.DrawFn) -> Any:
    throttle = draw(_THROTTLE)
    if not isinstance(throttle, str):
        return throttle
    shared = {"key": throttle, "limit": SHARED_THROTTLES[throttle]}
    ttl = draw(_THROTTLE_TTL)
    return shared if ttl is None else {**shared, "ttl": ttl}


def _draw_task(
    draw: st.DrawFn,
    name: str,
    earlier: tuple[str, ...],
    polling_only: bool,
) -> TaskSpec:
    depends_on = tuple(other for other in earlier if draw(_BOOLEANS))
    retry = draw(_RETRY)
    retries = RetryPolicy.from_option(retry).count
    return TaskSpec(
        name=name,
        depends_on=depends_on,
        each=draw(_BOOLEANS),
        enqueue=draw(_ENQUEUE),
        retry=retry,
        output=not draw(_BOOLEANS),
        condition=draw(_CONDITION),
        throttle=_throttle(draw),
        timeout=draw(_TIMEOUT),
        dependency_wait=draw(_DEPENDENCY_WAIT[polling_only]),
        dry_run=draw(_DRY_RUN),
        flaky=draw(_FLAKY[min(retries, 2)]),
        salt=draw(_SALT),
    )


@st.composite
def task_specs(
    draw: st.DrawFn,
    name: str,
    earlier: tuple[str, ...] = (),
    *,
    polling_only: bool = True,
) -> TaskSpec:
    """One task named ``name`` that may depend on tasks named in ``earlier``.

    ``polling_only=False`` keeps its dependency wait rescheduling (see
    :func:`simulations`).
    """
    return _draw_task(draw, name, earlier, polling_only)


@st.composite
def workflow_specs(
    draw: st.DrawFn,
    *,
    max_tasks: int = 5,
    polling_only: bool = True,
) -> WorkflowSpec:
    """A workflow as data: 1..``max_tasks`` tasks, each depending on earlier ones.

    ``polling_only`` as for :func:`task_specs`.
    """
    count = draw(st.integers(1, max_tasks))
    tasks: list[TaskSpec] = []
    for position in range(count):
        earlier = tuple(t.name for t in tasks)
        tasks.append(_draw_task(draw, f"t{position}", earlier, polling_only))
    return WorkflowSpec(
        tasks=tuple(tasks),
        queue=draw(_QUEUE),
        dry_run=draw(_WORKFLOW_DRY_RUN),
    )


def workflows(
    *, max_tasks: int = 5, polling_only: bool = True
) -> st.SearchStrategy[type[Workflow]]:
    """Random valid Workflow classes (arguments ``items: list[int]``, ``factor``).

    Each class is registered under ``jw_sim.W<hash of its structure>``; its
    spec is ``cls.jw_spec`` and its readable source ``cls.__doc__``.
    """
    return workflow_specs(max_tasks=max_tasks, polling_only=polling_only).map(
        WorkflowSpec.build
    )


def arguments() -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for a drawn workflow; ``factor`` is sometimes left to default."""
    return _ARGUMENTS


_ARGUMENTS = st.fixed_dictionaries(
    {"items": st.lists(st.integers(0, 9), max_size=4)},
    optional={"factor": st.integers(1, 3)},
)


@functools.lru_cache
def fault_plans(
    *,
    max_probability: float = 0.2,
    duplicate_delivery: bool = True,
    lease_expiry: bool = False,
) -> st.SearchStrategy[Faults]:
    """Faults with each probability in [0, ``max_probability``] (hundredths).

    ``lease_expiry`` stays 0 unless asked for: a lease taken away from a live
    holder lets a second holder in, which ``check()`` rightly reports as a
    broken throttle limit, so it does not belong in "faults never break
    invariants" properties. ``duplicate_delivery=False`` keeps that fault at
    0 too.
    """
    probability = _probability(max_probability)
    return st.builds(
        Faults,
        task_errors=probability,
        crashes=probability,
        crash_points=st.sets(st.sampled_from(CRASH_POINTS), min_size=1).map(
            lambda points: tuple(p for p in CRASH_POINTS if p in points)
        ),
        duplicate_delivery=probability if duplicate_delivery else st.just(0.0),
        slow_tasks=probability,
        slow_factor=st.sampled_from([2.0, 5.0, MAX_SLOW_FACTOR]),
        backend_errors=probability,
        lease_expiry=probability if lease_expiry else st.just(0.0),
        stale_reads=probability,
        late_finish=probability,
        restart_delay=st.sampled_from([1.0, 5.0, 30.0]),
        alive_threshold=st.sampled_from([30.0, 60.0, 300.0]),
    )


def durations(task_names: tuple[str, ...] = ()) -> st.SearchStrategy[Durations]:
    """None (the default 1 s), one number, or per-task numbers and draws."""
    seconds = st.sampled_from([0.0, 0.5, 1.0, 2.0, MAX_DURATION])
    uniform = st.tuples(seconds, seconds).map(
        lambda pair: UniformDuration(min(pair), max(pair))
    )
    per_task: st.SearchStrategy[Durations] = st.nothing()
    if task_names:
        per_task = st.dictionaries(
            st.sampled_from(task_names), seconds | uniform, max_size=3
        )
    return st.one_of(st.none(), seconds, per_task)


@functools.lru_cache
def _workflow_lists(
    max_workflows: int, max_tasks: int, polling_only: bool
) -> st.SearchStrategy[list[WorkflowSpec]]:
    return st.lists(
        workflow_specs(max_tasks=max_tasks, polling_only=polling_only),
        min_size=1,
        max_size=max_workflows,
    )


@st.composite
def simulations(
    draw: st.DrawFn,
    *,
    faults: bool | st.SearchStrategy[Faults] | None = None,
    max_workflows: int = 3,
    max_tasks: int = 5,
    max_workers: int = 6,
) -> Scenario:
    """A whole scenario: workflows with arguments, workers, seed, faults, durations.

    ``faults``: True always draws a plan from :func:`fault_plans`, False
    never injects faults, None does either, and a strategy is drawn from.

    When a workflow may wait by polling only, the scenario has more workers
    than workflows and no duplicate delivery, so polling parents can never
    occupy every worker: a deadlock then is a bug, not the starvation the
    guide describes.
    """
    plan = Faults()
    if isinstance(faults, st.SearchStrategy):
        plan = draw(faults)
    elif faults or (faults is None and draw(st.booleans())):
        plan = draw(fault_plans())
    polling_only = plan.duplicate_delivery == 0
    specs = draw(_workflow_lists(max_workflows, max_tasks, polling_only))
    runs = tuple((spec, draw(_ARGUMENTS)) for spec in specs)
    minimum = len(runs) + 1 if any(s.polls_forever for s in specs) else 1
    workers = draw(st.integers(minimum, max(minimum, max_workers)))
    names = tuple(sorted({t.name for spec in specs for t in spec.tasks}))
    return Scenario(
        workflows=runs,
        workers=workers,
        seed=draw(st.integers(0, 2**32 - 1)),
        faults=plan,
        durations=draw(durations(names)),
    )
