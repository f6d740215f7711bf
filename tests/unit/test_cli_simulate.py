"""``job-workflow simulate`` (SPEC §10): many seeds, a progress bar, the
first failing seed with a command line that replays it, and one-line errors
(exit 2, no traceback) for bad input.

Most tests call ``main([...])`` in-process and read stdout/stderr with
capsys; one runs the real program in a subprocess.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _sim_cli_workflows import AttemptCounter

from job_workflow import cli
from job_workflow.errors import InvariantViolation
from job_workflow.simulator import Faults, Simulation

HERE = Path(__file__).resolve().parent
ITEMS = json.dumps({"items": [1, 2, 3]})


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_seed_passing_exits_0_with_a_summary(capsys) -> None:
    code, out, err = run(
        capsys,
        "_sim_cli_workflows:Doubler",
        "--args",
        ITEMS,
        "--workers",
        "3",
        "--seeds",
        "0..19",
        "--faults",
        "task_errors=0.1,crashes=0.05,crash_points=claimed+before_body",
    )

    assert code == 0
    assert out.startswith("20 seeds passed check() (seeds 0..19, 3 workers, ")
    assert "crashes=0.05" in out
    assert "virtual makespan" in out
    assert err.startswith("\rsimulate [")
    assert err.endswith("\rsimulate [" + "#" * 30 + "] 20/20 seeds\n")
    assert err.count("\r") == 20


def test_it_stops_at_the_first_failing_seed_and_prints_a_replay(capsys) -> None:
    faults = Faults(task_errors=0.2)
    failing = []
    for seed in range(10, 40):
        sim = Simulation(workers=2, seed=seed, faults=faults)
        try:
            sim.run(AttemptCounter, items=[1, 2, 3]).check()
        except InvariantViolation as exc:
            failing.append((seed, str(exc)))
    first, violation = failing[0]
    assert first > 10  # the range has passing seeds before the failure

    code, out, err = run(
        capsys,
        "_sim_cli_workflows:AttemptCounter",
        "--args",
        ITEMS,
        "--workers",
        "2",
        "--seeds",
        "10..39",
        "--faults",
        "task_errors=0.2",
    )

    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (
        f"seed {first} broke an invariant (after {first - 10} passing seeds):"
    )
    assert lines[1] == f"  {violation}"
    assert "outputs differ from perform_now" in violation
    assert lines[2] == "replay:"
    assert lines[3] == (
        "  job-workflow simulate _sim_cli_workflows:AttemptCounter --args "
        f"'{ITEMS}' --workers 2 --seeds {first} --faults task_errors=0.2"
    )
    assert lines[4] == "or in Python:"
    assert (
        f"Simulation(workers=2, seed={first}, faults=Faults(task_errors=0.2)"
        in (lines[5])
    )
    assert err.endswith(f"{first - 10 + 1}/30 seeds\n")  # no seed after it ran

    # The printed command line replays exactly that failure.
    replay = shlex.split(lines[3])[2:]
    code, again, _ = run(capsys, *replay)
    assert code == 1
    assert again.splitlines()[1] == f"  {violation}"


def test_the_python_replay_line_reproduces_the_failure(capsys) -> None:
    code, out, _ = run(
        capsys,
        "_sim_cli_workflows:Starving",
        "--args",
        ITEMS,
        "--workers",
        "1",
        "--seeds",
        "5..9",
    )

    assert code == 1
    assert out.startswith("seed 5 broke an invariant (after 0 passing seeds):\n")
    assert "deadlock" in out
    python = out.split("or in Python:\n", 1)[1].strip()
    with pytest.raises(InvariantViolation, match="deadlock"):
        exec(python, {})


def test_one_seed_and_durations(capsys) -> None:
    code, out, _ = run(
        capsys,
        "_sim_cli_workflows:Doubler",
        "--args",
        ITEMS,
        "--seeds",
        "7",
        "--durations",
        json.dumps({"double": 10, "total": 0.5}),
    )

    assert code == 0
    assert out.startswith("1 seed passed check() (seed 7, 4 workers, no faults)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "9..3"], "--seeds 9..3: the range ends before it starts"),
        (["--seeds", "a..b"], "--seeds expects A..B such as 0..99"),
        (["--seeds", "1...5"], "--seeds expects A..B"),
        (["--faults", "bogus=0.1"], "--faults: unknown fault 'bogus'; known: "),
        (["--faults", "crashes"], "--faults: crashes needs a value"),
        (["--faults", "crashes=lots"], "--faults: crashes expects a number"),
        (["--faults", "crashes=1.5"], "Faults.crashes must be a probability"),
        (["--faults", "crash_points=nowhere"], "unknown crash point(s) ['nowhere']"),
        (["--durations", "{bad"], "--durations is not valid JSON"),
        (["--durations", '{"double": -1}'], "--durations expects a number"),
        (["--workers", "0"], "argument --workers: expected at least 1 worker"),
        (["--args", "[1, 2]"], "--args must be a JSON object"),
        (["--args", "{nope"], "--args is not valid JSON"),
        (["--args", '{"items": ["x"]}'], "argument 'items'"),
        (["--args", '{"colour": 1, "items": []}'], "colour"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message) -> None:
    args = ["_sim_cli_workflows:Doubler", "--args", ITEMS, *argv]
    code, out, err = run(capsys, *args)

    assert code == 2
    assert out == ""
    assert err.startswith("job-workflow: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_an_unknown_workflow_is_a_usage_error(capsys) -> None:
    code, _, err = run(capsys, "_sim_cli_workflows:Doubling", "--args", ITEMS)
    assert code == 2
    assert "did you mean 'Doubler'?" in err


def test_help_shows_examples(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "--seeds A..B" in out
    assert "examples:" in out
    assert "--faults task_errors=0.1,crashes=0.05" in out


def test_the_real_program_reports_the_first_failing_seed() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "job_workflow.cli",
            "simulate",
            "_sim_cli_workflows:Starving",
            "--args",
            ITEMS,
            "--workers",
            "1",
            "--seeds",
            "3..9",
        ],
        cwd=HERE,
        capture_output=True,
        timeout=60,
    )
    out, err = done.stdout.decode(), done.stderr.decode()  # keep the \r

    assert done.returncode == 1
    assert out.startswith("seed 3 broke an invariant (after 0 passing seeds):")
    assert "deadlock" in out
    assert "--workers 1 --seeds 3\n" in out
    assert err == "\rsimulate [####..........................] 1/7 seeds\n"
