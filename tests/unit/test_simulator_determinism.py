"""One seed, one run: the simulator's determinism (SPEC §6, STYLE habit 6).

Over 100 random scenarios two runs with one seed give the same trace and
digest; a scenario's ``repr`` rebuilds it exactly; different seeds under a
fault plan give different traces; and the digest does not depend on the
process (hash randomisation, a fresh interpreter).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

from hypothesis import HealthCheck, given, settings

from job_workflow.simulator import Faults
from job_workflow.simulator.strategies import (
    Scenario,
    TaskSpec,
    WorkflowSpec,
    simulations,
)

SCENARIOS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Enough opportunities for faults that two seeds almost never share a trace:
# 2 workflows x (6 iterations + 1 total), each step able to fail or slow down.
PIPELINE = WorkflowSpec(
    tasks=(
        TaskSpec(name="fetch", each=True, enqueue={"concurrency": 2}, retry=3),
        TaskSpec(name="parse", depends_on=("fetch",), each=True, retry=2),
        TaskSpec(name="total", depends_on=("parse",), dependency_wait=5, retry=1),
    )
)
FAULTS = Faults(task_errors=0.15, crashes=0.05, slow_tasks=0.2, backend_errors=0.02)


def faulty(seed: int) -> Scenario:
    return Scenario(
        workflows=(
            (PIPELINE, {"items": [1, 2, 3, 4, 5, 6]}),
            (PIPELINE, {"items": [7, 8, 9], "factor": 3}),
        ),
        workers=3,
        seed=seed,
        faults=FAULTS,
    )


@SCENARIOS
@given(simulations())
def test_two_runs_with_one_seed_give_the_same_digest(scenario: Scenario) -> None:
    first, second = scenario.run(), scenario.run()

    assert first.trace == second.trace
    assert first.digest == second.digest
    assert first.statuses == second.statuses
    assert first.outputs == second.outputs
    assert first.metrics == second.metrics


@settings(SCENARIOS, max_examples=30)
@given(simulations())
def test_a_scenario_repr_rebuilds_the_same_run(scenario: Scenario) -> None:
    namespace: dict[str, object] = {}
    exec(
        "from job_workflow.simulator import Faults\n"
        "from job_workflow.simulator.strategies import *\n"
        f"rebuilt = {scenario!r}",
        namespace,
    )
    rebuilt = namespace["rebuilt"]

    assert rebuilt == scenario
    assert isinstance(rebuilt, Scenario)
    assert rebuilt.run().digest == scenario.run().digest


def test_different_seeds_with_faults_give_different_digests() -> None:
    digests = {faulty(seed).run().digest for seed in range(100)}
    assert len(digests) >= 95


def test_without_faults_or_random_durations_the_seed_changes_nothing() -> None:
    # The seed only feeds faults, jitter and callable durations.
    plain = [
        Scenario(workflows=((PIPELINE, {"items": [1, 2]}),), workers=2, seed=seed)
        for seed in (0, 1, 2)
    ]
    assert len({scenario.run().digest for scenario in plain}) == 1


def test_the_digest_is_the_same_in_another_process() -> None:
    scenarios = [faulty(seed) for seed in (3, 4)]
    code = (
        "import json\n"
        "from job_workflow.simulator import Faults\n"
        "from job_workflow.simulator.strategies import *\n"
        f"scenarios = [{', '.join(map(repr, scenarios))}]\n"
        "print(json.dumps([s.run().digest for s in scenarios]))\n"
    )
    here = [scenario.run().digest for scenario in scenarios]
    # A fresh interpreter with its own string hashing (this one's is random).
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == here


def test_the_global_random_state_does_not_change_the_run() -> None:
    random.seed(1)
    first = faulty(9).run().digest
    random.seed(2)
    assert faulty(9).run().digest == first
