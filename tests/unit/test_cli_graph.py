"""The ``job-workflow graph`` and ``dry-run`` commands (SPEC §10).

Most tests call ``main([...])`` in-process and read stdout/stderr with
capsys; a few run the real program in a subprocess to check exit codes and
that no traceback ever reaches the terminal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from job_workflow import cli

HERE = Path(__file__).resolve().parent
ORDERS = "_cli_workflows:Orders"
ARGS = json.dumps({"order_ids": [1, 2, 3]})
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="graphviz 'dot' is not installed (apt-get install graphviz)",
)


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("job-workflow: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# --- graph ------------------------------------------------------------------


def test_graph_prints_dot_by_default(capsys):
    code, out, err = run(capsys, "graph", ORDERS)

    assert code == 0
    assert err == ""
    assert out.startswith('digraph "tests.cli.Orders" {')
    assert '"fetch" -> "payment:charge"' in out
    assert 'label="payment:"' in out


def test_graph_mermaid(capsys):
    code, out, _ = run(capsys, "graph", ORDERS, "--format", "mermaid")

    assert code == 0
    assert "flowchart LR" in out
    assert 'subgraph ns0 ["payment:"]' in out


def test_graph_writes_a_file_by_extension(capsys, tmp_path):
    target = tmp_path / "orders.mmd"
    code, out, _ = run(capsys, "graph", ORDERS, "-o", str(target))

    assert code == 0
    assert out.strip() == f"wrote {target} (mermaid)"
    assert target.read_text().startswith("---\ntitle:")


def test_graph_format_beats_the_extension(capsys, tmp_path):
    target = tmp_path / "orders.txt"
    code, _, _ = run(capsys, "graph", ORDERS, "-o", str(target), "--format", "dot")

    assert code == 0
    assert target.read_text().startswith("digraph")


@needs_dot
def test_graph_svg_to_a_file(capsys, tmp_path):
    target = tmp_path / "orders.svg"
    code, _, _ = run(capsys, "graph", ORDERS, "-o", str(target))

    assert code == 0
    svg = target.read_text()
    assert "<svg" in svg
    assert "fetch" in svg
    assert "charge" in svg


@needs_dot
def test_graph_svg_to_stdout(capsys):
    code, out, _ = run(capsys, "graph", ORDERS, "--format", "svg")

    assert code == 0
    assert "<svg" in out


def test_graph_png_needs_a_file(capsys):
    code, out, err = run(capsys, "graph", ORDERS, "--format", "png")

    assert code == 2
    assert out == ""
    assert_one_error_line(err, "png", "-o")


def test_graph_png_without_graphviz_says_to_install_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = run(capsys, "graph", ORDERS, "-o", str(tmp_path / "g.png"))

    assert code == 1
    assert_one_error_line(err, "graphviz", "apt-get install graphviz")
    assert not (tmp_path / "g.png").exists()


# --- dry-run ----------------------------------------------------------------


def test_dry_run_prints_the_table(capsys):
    code, out, err = run(capsys, "dry-run", ORDERS, "--args", ARGS)

    assert code == 0
    assert err == ""
    assert out.splitlines()[0] == "dry run of tests.cli.Orders: succeeded"
    row = next(line for line in out.splitlines() if line.startswith("payment:charge"))
    assert row.split()[:3] == ["payment:charge", "ran", "3"]
    assert "3 on payments, max 2" in row
    assert "gateway x3" in row


def test_dry_run_json(capsys):
    code, out, _ = run(capsys, "dry-run", ORDERS, "--args", ARGS, "--json")

    assert code == 0
    data = json.loads(out)
    assert data["workflow"] == "tests.cli.Orders"
    assert [t["status"] for t in data["tasks"]] == ["ran", "ran", "ran"]


def test_dry_run_json_arguments_are_decoded_to_their_types(capsys):
    code, out, _ = run(
        capsys, "dry-run", "_cli_workflows:Dated", "--args", '{"day": "2024-05-06"}'
    )

    assert code == 0
    assert "weekday: [{'weekday': 0}]" in out


def test_dry_run_draws_to_a_file(capsys, tmp_path):
    target = tmp_path / "run.dot"
    code, out, _ = run(
        capsys,
        "dry-run",
        ORDERS,
        "--args",
        '{"order_ids": [1], "notify": false}',
        "-o",
        str(target),
    )

    assert code == 0
    assert out.strip() == f"wrote {target} (dot)"
    dot = target.read_text()
    assert "dry run of tests.cli.Orders: succeeded" in dot
    assert "skipped: condition_not_met" in dot


def test_a_failed_dry_run_prints_the_table_and_exits_1(capsys):
    code, out, err = run(capsys, "dry-run", ORDERS, "--args", '{"order_ids": [1, -5]}')

    assert code == 1
    assert "failed" in out.splitlines()[0]
    assert_one_error_line(err, "the dry run failed: ValueError: bad order -5")


def test_args_default_to_an_empty_object(capsys):
    code, _, err = run(capsys, "dry-run", ORDERS)

    assert code == 2
    assert_one_error_line(err, "order_ids", "missing")


# --- bad input: one line, exit 2 (usage) or 1 (runtime) ---------------------


@pytest.mark.parametrize(
    ("argv", "code", "fragments"),
    [
        (["graph", "no_colon_here"], 2, ["expected MODULE:Workflow", "no_colon_here"]),
        (["graph", "a:b:c"], 2, ["expected MODULE:Workflow"]),
        (["graph", "no_such_module_xyz:Flow"], 2, ["module 'no_such_module_xyz'"]),
        (["graph", "_cli_workflows:Order"], 2, ["no attribute 'Order'", "'Orders'"]),
        (["graph", "_cli_workflows:Zzz"], 2, ["workflows in it: Dated, Orders"]),
        (
            ["graph", "_cli_workflows:NOT_A_WORKFLOW"],
            2,
            ["is an int, not a Workflow subclass"],
        ),
        (["graph", "job_workflow:Workflow"], 2, ["not a Workflow subclass"]),
        (["graph", "_cli_broken:Flow"], 1, ["RuntimeError: this module is broken"]),
        (["graph", ORDERS, "--format", "jpeg"], 2, ["invalid choice: 'jpeg'"]),
        (["graph", ORDERS, "-o", "x.jpeg"], 2, ["extension", "--format"]),
        (["dry-run", ORDERS, "--args", "{nope"], 2, ["--args is not valid JSON"]),
        (["dry-run", ORDERS, "--args", "[1, 2]"], 2, ["JSON object", "got list"]),
        (
            ["dry-run", ORDERS, "--args", '{"order_ids": "x"}'],
            2,
            ["argument 'order_ids'", "list[int]"],
        ),
        (["dry-run", ORDERS, "--args", '{"colour": 1}'], 2, ["'colour'"]),
        (["graph"], 2, ["required", "MODULE:Workflow"]),
        (["bogus"], 2, ["invalid choice: 'bogus'"]),
    ],
)
def test_bad_input_is_one_error_line(capsys, argv, code, fragments):
    got, _out, err = run(capsys, *argv)

    assert got == code
    assert "Traceback" not in err
    assert_one_error_line(err, *fragments)


def test_unwritable_output_is_a_runtime_error(capsys, tmp_path):
    code, _, err = run(
        capsys, "graph", ORDERS, "-o", str(tmp_path / "missing" / "dir" / "g.dot")
    )

    assert code == 1
    assert_one_error_line(err, "cannot write")


def test_no_command_prints_help_and_exits_2(capsys):
    code, _out, err = run(capsys)

    assert code == 2
    assert "graph" in err
    assert "dry-run" in err


@pytest.mark.parametrize("command", ["graph", "dry-run"])
def test_every_command_has_help_with_examples(capsys, command):
    code, out, _ = run(capsys, command, "--help")

    assert code == 0
    assert "examples:" in out
    assert f"job-workflow {command} shop.workflows:Checkout" in out


def test_top_level_help_lists_the_commands(capsys):
    code, out, _ = run(capsys, "--help")

    assert code == 0
    assert "graph" in out
    assert "dry-run" in out
    assert "examples:" in out


def test_commands_are_registered_in_one_table():
    assert set(cli.COMMANDS) >= {"graph", "dry-run"}
    assert all(callable(register) for register in cli.COMMANDS.values())


# --- the real program -------------------------------------------------------


def _program(*argv: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(HERE))
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "job_workflow.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_subprocess_success_and_exit_code():
    done = _program("graph", ORDERS, "--format", "mermaid")

    assert done.returncode == 0, done.stderr
    assert "flowchart LR" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["graph", "nope"], 2),
        (["graph", "_cli_broken:Flow"], 1),
        (["dry-run", ORDERS, "--args", "{"], 2),
        (["dry-run", ORDERS, "--args", '{"order_ids": [-1]}'], 1),
    ],
)
def test_subprocess_errors_have_no_traceback(argv, code):
    done = _program(*argv)

    assert done.returncode == code
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("job-workflow: error: ")


def test_subprocess_without_graphviz(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _program("graph", ORDERS, "-o", str(tmp_path / "g.svg"), path=str(empty))

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "apt-get install graphviz" in done.stderr


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "job-workflow"
    if not script.exists():
        pytest.skip("the job-workflow console script is not installed in this venv")
    done = subprocess.run(
        [str(script), "dry-run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0
    assert "examples:" in done.stdout
