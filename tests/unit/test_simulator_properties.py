"""Property tests with ``job_workflow.simulator.strategies`` (SPEC §6).

Random scenarios without faults: ``check()`` passes and every workflow
succeeds. With fault plans: ``check()`` still passes (faults may fail
workflows, never break an invariant). The strategies themselves: drawn
workflows are valid, registered and use every task option; fault plans stay
bounded; a failing scenario tells how to replay it. Two false reports of
``check()`` these properties found are kept as regression tests.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job_workflow import Workflow, use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock
from job_workflow.core._workflow import registry
from job_workflow.errors import InvariantViolation
from job_workflow.simulator import Faults, SimulationResult
from job_workflow.simulator.strategies import (
    SHARED_THROTTLES,
    Scenario,
    TaskSpec,
    WorkflowSpec,
    arguments,
    check_scenario,
    fault_plans,
    simulations,
    workflow_specs,
    workflows,
)

PROPERTIES = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_time_moves_forward(result: SimulationResult) -> None:
    times = [entry.time for entry in result.trace]
    assert times == sorted(times)


# -- the properties --


@PROPERTIES
@given(simulations(faults=False))
def test_without_faults_check_passes_and_every_workflow_succeeds(
    scenario: Scenario,
) -> None:
    result = check_scenario(scenario)

    assert not result.deadlocked
    assert set(result.statuses.values()) == {"succeeded"}, scenario.replay_text()
    assert result.metrics.retries == sum(
        1 for entry in result.trace if entry.event == "task.retry"
    )
    assert_time_moves_forward(result)


@PROPERTIES
@given(simulations(faults=True))
def test_with_faults_check_passes(scenario: Scenario) -> None:
    result = check_scenario(scenario)

    assert not result.deadlocked
    assert set(result.statuses.values()) <= {"succeeded", "failed"}
    assert_time_moves_forward(result)


# -- the strategies --


def test_drawn_workflows_use_every_task_option() -> None:
    used: set[str] = set()
    forms: set[str] = set()

    @settings(PROPERTIES, max_examples=60)
    @given(workflow_specs())
    def collect(spec: WorkflowSpec) -> None:
        for task_spec in spec.tasks:
            options = task_spec.options()
            used.update(k for k, v in options.items() if v not in (None, False, []))
            forms.update(_forms(task_spec))

    collect()
    assert used >= {
        "depends_on",
        "each",
        "enqueue",
        "retry",
        "output",
        "condition",
        "throttle",
        "timeout",
        "dependency_wait",
        "dry_run",
    }
    assert forms >= {
        "enqueue:concurrency",
        "enqueue:callable",
        "retry:jitter",
        "throttle:shared",
        "throttle:limit",
        "dependency_wait:poll_only",
        "dependency_wait:int",
        "dependency_wait:dict",
        "dry_run:callable",
        "flaky",
    }


def _forms(spec: TaskSpec) -> set[str]:
    forms = set()
    if isinstance(spec.enqueue, dict) and "concurrency" in spec.enqueue:
        forms.add("enqueue:concurrency")
    if isinstance(spec.enqueue, str):
        forms.add("enqueue:callable")
    if isinstance(spec.retry, dict) and spec.retry.get("jitter"):
        forms.add("retry:jitter")
    if isinstance(spec.throttle, dict):
        forms.add("throttle:shared")
    if isinstance(spec.throttle, int):
        forms.add("throttle:limit")
    if spec.depends_on and spec.polls_forever:
        forms.add("dependency_wait:poll_only")
    if isinstance(spec.dependency_wait, int) and spec.dependency_wait > 0:
        forms.add("dependency_wait:int")
    if isinstance(spec.dependency_wait, dict) and spec.dependency_wait:
        forms.add("dependency_wait:dict")
    if isinstance(spec.dry_run, str):
        forms.add("dry_run:callable")
    if spec.flaky:
        forms.add("flaky")
    return forms


@settings(PROPERTIES, max_examples=25)
@given(workflows(), arguments())
def test_drawn_workflows_are_registered_and_run_with_perform_now(
    cls: type[Workflow], values: dict[str, Any]
) -> None:
    assert issubclass(cls, Workflow)
    assert registry.get(cls.name) is cls
    assert cls.__qualname__ == cls.name.split(".")[-1]
    assert cls.jw_spec.build() is cls  # type: ignore[attr-defined]

    clock = ManualClock()  # retry delays wait in virtual time, not for real
    with use_clock(clock), use_backend(MemoryBackend(clock=clock)):
        run = cls.perform_now(**values)
    assert run.status == "succeeded"


def test_one_structure_is_one_class_and_two_structures_two_names() -> None:
    one = WorkflowSpec(tasks=(TaskSpec(name="t0"),))
    other = WorkflowSpec(tasks=(TaskSpec(name="t0", salt=1),))

    assert one.build() is WorkflowSpec(tasks=(TaskSpec(name="t0"),)).build()
    assert one.name != other.name
    assert one.build() is not other.build()


@settings(PROPERTIES, max_examples=100)
@given(fault_plans())
def test_fault_plans_are_bounded(faults: Faults) -> None:
    for probability in (
        faults.task_errors,
        faults.crashes,
        faults.duplicate_delivery,
        faults.slow_tasks,
        faults.backend_errors,
    ):
        assert 0 <= probability <= 0.2
    assert faults.lease_expiry == 0  # only when asked for
    assert faults.crash_points
    assert faults.slow_factor <= 10
    assert 0 < faults.restart_delay <= faults.alive_threshold * 10


@settings(PROPERTIES, max_examples=30)
@given(simulations())
def test_shared_throttle_keys_always_carry_their_one_limit(
    scenario: Scenario,
) -> None:
    for spec, _ in scenario.workflows:
        for task_spec in spec.tasks:
            throttle = task_spec.throttle
            if isinstance(throttle, dict):
                assert throttle["limit"] == SHARED_THROTTLES[throttle["key"]]


@settings(PROPERTIES, max_examples=30)
@given(simulations())
def test_polling_workflows_always_leave_a_worker_free(scenario: Scenario) -> None:
    if any(spec.polls_forever for spec, _ in scenario.workflows):
        assert scenario.workers > len(scenario.workflows)
        assert scenario.faults.duplicate_delivery == 0


# -- replaying a failure --

STARVING = WorkflowSpec(
    tasks=(
        TaskSpec(name="fetch", each=True, enqueue=True),
        TaskSpec(name="total", depends_on=("fetch",)),  # polls only
    )
)


def starving(seed: int = 0) -> Scenario:
    return Scenario(
        workflows=((STARVING, {"items": [1, 2]}), (STARVING, {"items": [3]})),
        workers=2,
        seed=seed,
    )


def test_check_scenario_adds_the_replay_text_to_the_violation() -> None:
    scenario = starving(seed=42)

    with pytest.raises(InvariantViolation) as caught:
        check_scenario(scenario)

    message = str(caught.value)
    assert message.startswith("deadlock: ")
    assert f"class {STARVING.qualname}(Workflow):" in message
    assert "@task(each=lambda ctx: ctx.arguments.items, enqueue=True" in message
    assert "workers=2 seed=42" in message
    assert repr(scenario) in message
    assert message.rstrip().endswith("scenario.run().check()")


def test_the_replay_text_reproduces_the_failure() -> None:
    with pytest.raises(InvariantViolation) as caught:
        check_scenario(starving(seed=7))

    code = str(caught.value).split("Replay it with:\n\n", 1)[1]
    with pytest.raises(InvariantViolation, match="deadlock"):
        exec(code, {})


def test_a_failing_hypothesis_example_shows_how_to_replay() -> None:
    @settings(PROPERTIES, max_examples=5)
    @given(st.integers(0, 10).map(starving))
    def property_that_fails(scenario: Scenario) -> None:
        check_scenario(scenario)

    with pytest.raises(InvariantViolation) as caught:
        property_that_fails()

    message = str(caught.value)
    assert "Replay it with:" in message
    # Hypothesis shrinks the seed; the text names the scenario it failed on.
    seed = int(re.findall(r"seed=(\d+),", message)[-1])
    assert repr(starving(seed)) in message


# -- false reports of check() the properties found, kept as regressions --


def test_a_dependent_of_an_empty_enqueued_map_is_in_order() -> None:
    # No sub-job ever finishes to mark the map task complete.
    spec = WorkflowSpec(
        tasks=(
            TaskSpec(name="fetch", each=True, enqueue=True),
            TaskSpec(name="total", depends_on=("fetch",), dependency_wait=5),
        )
    )
    scenario = Scenario(workflows=((spec, {"items": []}),), workers=2, seed=0)
    result = scenario.run()

    assert set(result.statuses.values()) == {"succeeded"}
    result.check()


def test_duplicate_parent_rerunning_a_finished_task() -> None:
    # The second copy's task.complete for "parse" comes after the first copy
    # started "store": the dependency completed at its first completion.
    spec = WorkflowSpec(
        tasks=(
            TaskSpec(name="parse", each=True),
            TaskSpec(name="store", depends_on=("parse",)),
        )
    )
    scenario = Scenario(
        workflows=((spec, {"items": [1, 2, 3]}),),
        workers=2,
        seed=3,
        faults=Faults(duplicate_delivery=1.0, slow_tasks=0.5),
    )
    result = scenario.run()

    assert set(result.statuses.values()) == {"succeeded"}
    result.check()
