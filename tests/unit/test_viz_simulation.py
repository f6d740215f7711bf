"""A simulation drawn two ways (SPEC §6, §8; issue 6): over the workflow graph
(``to_dot``/``to_mermaid``/``to_networkx``/``render`` of a SimulationResult)
and as a timeline (``job_workflow.viz.timeline``, hand-written SVG).

The timeline tests parse the SVG with ``xml.etree`` and read it through the
``class`` and ``data-*`` attributes of its groups: one row per worker, task
bars at x positions proportional to their span times with ``task[index]``
labels, crash crosses where the trace has ``worker.crash``, polls running to
the end of a deadlocked run, legend entries for what is drawn. The overlay
tests read counts and colours from the DOT text and node attributes. Both
outputs are byte-stable for one seed. Also ``job-workflow simulate
--timeline``, which draws the first failing seed (or the last one).
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from job_workflow import Workflow, argument, cli, task
from job_workflow.simulator import Faults, Simulation, SimulationResult
from job_workflow.viz import render, timeline, to_dot, to_mermaid, to_networkx
from job_workflow.viz._style import STATUS
from job_workflow.viz._timeline import LEFT, RIGHT

SVG = "{http://www.w3.org/2000/svg}"
HERE = Path(__file__).resolve().parent


class Fan(Workflow):
    """Prepare, fan out to sub-jobs (two at a time), then add them up."""

    name = "tests.viz_sim.Fan"
    items = argument(list[int])

    @task(output={"base": int})
    def prepare(self, ctx: Any) -> dict[str, int]:
        return {"base": 10}

    @task(
        depends_on=["prepare"],
        each=lambda ctx: ctx.arguments.items,
        enqueue={"concurrency": 2},
        retry=3,
        output={"value": int},
    )
    def crunch(self, ctx: Any) -> dict[str, int]:
        return {"value": ctx.output["prepare"][0].base + ctx.each_value}

    @task(
        depends_on=["crunch"],
        dependency_wait={"poll_timeout": 4, "poll_interval": 1, "reschedule_delay": 3},
        output={"total": int},
    )
    def total(self, ctx: Any) -> dict[str, int]:
        return {"total": sum(row.value for row in ctx.output["crunch"])}


class Squares(Workflow):
    """A map task in the workflow's own job: crashes land inside it."""

    name = "tests.viz_sim.Squares"
    items = argument(list[int])

    @task(each=lambda ctx: ctx.arguments.items, output={"square": int})
    def square(self, ctx: Any) -> dict[str, int]:
        return {"square": ctx.each_value**2}

    @task(depends_on=["square"], condition=lambda ctx: False)
    def never(self, ctx: Any) -> None:
        pass


class Breaks(Workflow):
    """Always fails in its second task."""

    name = "tests.viz_sim.Breaks"

    @task
    def start(self, ctx: Any) -> None:
        pass

    @task(depends_on=["start"])
    def explode(self, ctx: Any) -> None:
        raise ValueError("boom")

    @task(depends_on=["explode"])
    def after(self, ctx: Any) -> None:
        pass


class Starving(Workflow):
    """Polls for its sub-jobs forever: two of them on two workers deadlock."""

    name = "tests.viz_sim.Starving<&>"

    @task(each=lambda ctx: [1, 2], enqueue=True, output={"v": int})
    def fetch(self, ctx: Any) -> dict[str, int]:
        return {"v": ctx.each_value}

    @task(depends_on=["fetch"])
    def total(self, ctx: Any) -> None:
        pass


DURATIONS = {"prepare": 2.0, "crunch": 5.0, "total": 1.0}


def fan(seed: int = 0, workers: int = 3) -> SimulationResult:
    sim = Simulation(workers=workers, seed=seed, durations=DURATIONS)
    sim.enqueue(Fan, items=[1, 2, 3, 4])
    sim.enqueue(Fan, items=[5, 6])
    return sim.run_until_idle()


def crashing(seed: int = 1) -> SimulationResult:
    faults = Faults(crashes=0.25, crash_points=("before_body",), alive_threshold=20)
    sim = Simulation(workers=2, seed=seed, faults=faults, durations=2.0)
    for n in range(3):
        sim.enqueue(Squares, items=[n, n + 1, n + 2])
    return sim.run_until_idle()


def starving() -> SimulationResult:
    sim = Simulation(workers=2)
    sim.enqueue(Starving)
    sim.enqueue(Starving)
    return sim.run_until_idle()


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def groups(root: ET.Element, css_class: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == css_class]


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def rect(group: ET.Element) -> ET.Element:
    found = group.find(f"{SVG}rect")
    assert found is not None
    return found


def scale(root: ET.Element, result: SimulationResult) -> float:
    width = float(root.get("width", "0"))
    return (width - LEFT - RIGHT) / result.metrics.makespan


# -- the timeline --


def test_the_timeline_has_one_row_per_worker_in_order() -> None:
    result = fan(workers=3)
    root = parse(timeline(result))

    rows = groups(root, "worker")
    assert [g.get("data-worker") for g in rows] == ["w0", "w1", "w2"]
    tops = [float(rect(g).get("y", "0")) for g in rows]
    assert tops == sorted(tops)
    assert len(set(tops)) == 3
    assert [texts(g)[0] for g in rows] == ["w0", "w1", "w2"]


def test_task_bars_sit_at_their_span_times_with_task_index_labels() -> None:
    result = fan()
    root = parse(timeline(result, width=1600))
    per_second = scale(root, result)

    bars = groups(root, "task")
    spans = [s for s in result.spans if s.kind == "task"]
    assert len(bars) == len(spans) == 1 + 4 + 1 + 1 + 2 + 1
    rows = {
        g.get("data-worker"): float(rect(g).get("y", "0"))
        for g in groups(root, "worker")
    }
    for bar, span in zip(bars, spans, strict=True):
        box = rect(bar)
        start, end = span.start - result.start, span.end - result.start
        assert bar.get("data-task") == span.task
        assert float(box.get("x", "0")) == pytest.approx(
            LEFT + start * per_second, abs=0.01
        )
        assert float(box.get("width", "0")) == pytest.approx(
            (end - start) * per_second, abs=0.01
        )
        # on its worker's row
        row_top = rows[span.worker]
        assert row_top < float(box.get("y", "0")) < row_top + 44
    labels = sorted(t for bar in bars for t in texts(bar))
    assert labels == sorted(
        ["prepare", "prepare", "total", "total"]
        + [f"crunch[{i}]" for i in (0, 1, 2, 3, 0, 1)]
    )


def test_crunch_bars_are_five_seconds_wide_and_share_a_colour() -> None:
    result = fan()
    root = parse(timeline(result, width=1600))
    per_second = scale(root, result)

    crunch = [g for g in groups(root, "task") if g.get("data-task") == "crunch"]
    widths = [float(rect(g).get("width", "0")) for g in crunch]
    assert widths == [pytest.approx(5 * per_second, abs=0.01)] * 6
    assert len({rect(g).get("fill") for g in crunch}) == 1
    colours = {g.get("data-task"): rect(g).get("fill") for g in groups(root, "task")}
    assert len(set(colours.values())) == 3  # one colour per task


def test_polls_and_the_axis_and_the_title() -> None:
    result = fan(seed=4)
    svg = timeline(result)
    root = parse(svg)

    polls = [g for g in groups(root, "wait") if g.get("data-kind") == "poll"]
    assert polls, "the parents poll for their sub-jobs"
    assert {g.get("data-job") for g in polls} <= set(result.statuses)
    [axis] = groups(root, "axis")
    ticks = [t.text for t in axis.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[0] == "0 s"
    assert all(re.fullmatch(r"\d+(\.\d+)? s", tick or "") for tick in ticks)
    title = " ".join(texts(root)[:3])
    assert "simulation timeline: tests.viz_sim.Fan" in title
    assert "seed 4, 3 workers, no faults" in title
    assert f"makespan {result.metrics.makespan:g} s" in title
    assert "2 runs: 2 succeeded" in title


def test_crash_crosses_restarts_and_down_time_follow_the_trace() -> None:
    result = crashing()
    crashes = [e for e in result.trace if e.event == "worker.crash"]
    restarts = [e for e in result.trace if e.event == "worker.restart"]
    assert crashes, "this seed must crash a worker"
    root = parse(timeline(result))

    crosses = groups(root, "crash")
    assert [(g.get("data-worker"), g.get("data-time")) for g in crosses] == [
        (e.worker, f"{e.time:g}") for e in crashes
    ]
    assert {g.get("data-task") for g in crosses} == {"square"}
    assert [g.get("data-worker") for g in groups(root, "restart")] == [
        e.worker for e in restarts
    ]
    assert any("#1" in texts(g) for g in groups(root, "restart"))
    # every incarnation stays on its worker's row
    assert {g.get("data-worker") for g in groups(root, "worker")} == {"w0", "w1"}
    assert len(groups(root, "down")) == len(crashes)


def test_the_legend_names_what_is_drawn_and_only_that() -> None:
    result = crashing()
    root = parse(timeline(result))
    legend = {g.get("data-key"): texts(g)[0] for g in groups(root, "legend-item")}

    assert legend["task:square"] == "task square"
    assert legend["crash"] == "worker crash"
    assert legend["restart"] == "restart (#n: new incarnation)"
    assert legend["down"] == "worker down (crashed)"
    assert "task:never" not in legend  # skipped by its condition: no bar
    assert "wait:poll" not in legend  # nothing polls here
    assert "deadlock" not in legend

    fan_legend = {
        g.get("data-key") for g in groups(parse(timeline(fan(4))), "legend-item")
    }
    assert {"task:prepare", "task:crunch", "task:total", "wait:poll"} <= fan_legend
    assert "crash" not in fan_legend


def test_retries_and_reschedules_are_marked() -> None:
    faults = Faults(task_errors=0.3)
    sim = Simulation(workers=2, seed=2, faults=faults, durations=DURATIONS)
    sim.enqueue(Fan, items=[1, 2, 3, 4])
    result = sim.run_until_idle()
    root = parse(timeline(result))

    kinds = [g.get("data-kind") for g in groups(root, "marker")]
    retries = [e for e in result.trace if e.event == "task.retry"]
    reschedules = [e for e in result.trace if e.event == "job.reschedule"]
    assert retries
    assert reschedules
    assert kinds.count("retry") == len(retries)
    assert kinds.count("reschedule") == len(reschedules)
    backoff = [g for g in groups(root, "wait") if g.get("data-kind") == "retry"]
    assert backoff


def test_a_deadlocked_run_draws_its_polls_to_the_end() -> None:
    result = starving()
    assert result.deadlocked
    svg = timeline(result, width=800)
    root = parse(svg)
    end = LEFT + result.metrics.makespan * scale(root, result)
    assert end == pytest.approx(800 - RIGHT)

    polls = [g for g in groups(root, "wait") if g.get("data-kind") == "poll"]
    for worker in ("w0", "w1"):
        mine = [rect(g) for g in polls if g.get("data-worker") == worker]
        assert mine
        last = mine[-1]
        right = float(last.get("x", "0")) + float(last.get("width", "0"))
        assert right == pytest.approx(end, abs=0.01)
    [line] = groups(root, "deadlock")
    assert "deadlock: nothing can move" in texts(line)
    assert "DEADLOCKED" in " ".join(texts(root)[:4])


def test_spans_of_a_deadlocked_result_include_the_open_polls() -> None:
    result = starving()
    ends = {span.worker: span.end for span in result.spans}
    assert ends == {
        "w0": result.start + result.metrics.makespan,
        "w1": result.start + result.metrics.makespan,
    }


def test_text_is_escaped_and_the_svg_still_parses() -> None:
    svg = timeline(starving())
    assert "tests.viz_sim.Starving&lt;&amp;&gt;" in svg
    assert "Starving<&>" not in svg
    parse(svg)


def test_one_seed_gives_the_same_bytes() -> None:
    assert timeline(crashing(seed=5)) == timeline(crashing(seed=5))
    assert timeline(fan(seed=2)) == timeline(fan(seed=2))
    assert timeline(crashing(seed=5)) != timeline(crashing(seed=6))


def test_timeline_writes_the_file_and_render_has_a_timeline_format(
    tmp_path: Path,
) -> None:
    result = fan()
    svg = timeline(result, tmp_path / "run.svg")
    assert (tmp_path / "run.svg").read_text(encoding="utf-8") == svg
    written = render(result, tmp_path / "again.svg", format="timeline")
    assert written.read_text(encoding="utf-8") == svg


def test_timeline_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="timeline draws a SimulationResult"):
        timeline(Fan)
    with pytest.raises(ValueError, match="width must be an int >= 480"):
        timeline(fan(), width=100)
    with pytest.raises(TypeError, match="timeline draws a SimulationResult"):
        render(Fan, "x.svg", format="timeline")


# -- the graph overlay --


def test_dot_overlay_counts_runs_iterations_and_sub_jobs() -> None:
    result = fan(seed=1)
    dot = to_dot(result)

    assert dot.startswith('digraph "simulation of tests.viz_sim.Fan" {')
    assert "seed 1, 3 workers, no faults, makespan" in dot
    assert "2 runs: 2 succeeded; 0 retries" in dot
    # crunch: 4 + 2 iterations as 6 sub-jobs, in both runs
    node = next(
        line for line in dot.splitlines() if line.strip().startswith('"crunch"')
    )
    assert "2 runs: 2 succeeded" in node
    assert "6 iterations" in node
    assert "6 sub-jobs" in node
    assert f'fillcolor="{STATUS["ran"].fill}"' in node
    reschedules = sum(1 for e in result.trace if e.event == "job.reschedule")
    total = next(
        line for line in dot.splitlines() if line.strip().startswith('"total"')
    )
    assert reschedules > 0
    word = "reschedule" if reschedules == 1 else "reschedules"
    assert f"{reschedules} {word}" in total
    assert '"legend_ran"' in dot
    assert "label=succeeded" in dot.replace('"', "")


def test_dot_overlay_colours_a_failure_and_what_did_not_run() -> None:
    result = Simulation(workers=1).run(Breaks)
    dot = to_dot(result)
    lines = {
        name: next(x for x in dot.splitlines() if x.strip().startswith(f'"{name}"'))
        for name in ("start", "explode", "after")
    }

    assert f'fillcolor="{STATUS["ran"].fill}"' in lines["start"]
    assert f'fillcolor="{STATUS["failed"].fill}"' in lines["explode"]
    assert "failed: ValueError" in lines["explode"]
    assert f'fillcolor="{STATUS["not_run"].fill}"' in lines["after"]
    assert "not run" in lines["after"]
    assert "failed (in at least one run)" in dot
    assert "1 run: 1 failed" in dot


def test_crashes_and_skips_are_counted_per_task() -> None:
    result = crashing()
    crashes = sum(1 for e in result.trace if e.event == "worker.crash")
    graph = to_networkx(result)

    square = graph.nodes["square"]
    assert square["crashes"] == crashes > 0
    assert square["succeeded"] == 3
    assert square["iterations"] == 9
    assert square["status"] == "ran"
    never = graph.nodes["never"]
    assert (never["skipped"], never["status"]) == (3, "skipped")
    assert graph.graph["kind"] == "simulation"
    assert graph.graph["seed"] == 1
    assert graph.graph["workers"] == 2
    assert graph.graph["faults"] == (
        "faults: crashes=0.25, crash_points=before_body, alive_threshold=20"
    )
    assert set(graph.graph["runs"].values()) == {"succeeded"}
    assert f">{crashes} crashes<" in to_dot(result)


def test_mermaid_overlay_has_the_seed_in_its_title_and_status_styles() -> None:
    text = to_mermaid(fan(seed=7))
    assert text.splitlines()[1].startswith(
        'title: "simulation of tests.viz_sim.Fan: seed 7, 3 workers, no faults'
    )
    assert f"fill:{STATUS['ran'].fill}" in text
    assert "6 sub-jobs" in text


def test_workflow_chooses_which_simulated_class_to_draw() -> None:
    sim = Simulation(workers=2, durations=1.0)
    sim.enqueue(Squares, items=[1, 2])
    sim.enqueue(Fan, items=[1])
    result = sim.run_until_idle()

    assert "simulation of tests.viz_sim.Squares" in to_dot(result)
    assert "also simulated: tests.viz_sim.Fan" in to_dot(result)
    assert "simulation of tests.viz_sim.Fan" in to_dot(result, workflow=Fan)
    graph = to_networkx(result, workflow="tests.viz_sim.Fan")
    assert set(graph.nodes) == {"prepare", "crunch", "total"}
    with pytest.raises(ValueError, match=r"'tests\.viz_sim\.Breaks' was not simulated"):
        to_dot(result, workflow="tests.viz_sim.Breaks")
    with pytest.raises(TypeError, match="workflow= cannot be used to draw a Workflow"):
        to_dot(Fan, workflow="tests.viz_sim.Fan")


def test_dot_overlay_is_byte_stable() -> None:
    assert to_dot(crashing(seed=3)) == to_dot(crashing(seed=3))
    assert to_mermaid(fan(seed=3)) == to_mermaid(fan(seed=3))


def test_render_writes_the_overlay_as_dot(tmp_path: Path) -> None:
    result = fan()
    path = render(result, tmp_path / "fan.dot", format="dot")
    assert path.read_text(encoding="utf-8") == to_dot(result)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' missing")
def test_render_draws_the_overlay_as_svg_with_graphviz(tmp_path: Path) -> None:
    path = render(fan(), tmp_path / "fan.svg")
    svg = path.read_text(encoding="utf-8")
    assert "simulation of tests.viz_sim.Fan" in svg
    assert "6 sub&#45;jobs" in svg or "6 sub-jobs" in svg


def test_a_deadlocked_overlay_says_so_and_shows_unfinished_tasks() -> None:
    dot = to_dot(starving())
    assert "2 runs: 2 running; 0 retries, 0 reschedules, 0 crashes; DEADLOCKED" in dot
    fetch = next(x for x in dot.splitlines() if x.strip().startswith('"fetch"'))
    assert "2 runs: 2 not finished" in fetch
    assert f'fillcolor="{STATUS["not_run"].fill}"' in fetch
    assert "not run, or not finished" in dot


# -- job-workflow simulate --timeline --


@pytest.fixture
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def simulate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["simulate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("importable")
def test_cli_timeline_draws_the_first_failing_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "failing.svg"
    code, out, _ = simulate(
        capsys,
        "_sim_cli_workflows:AttemptCounter",
        "--args",
        '{"items": [1, 2, 3]}',
        "--seeds",
        "0..200",
        "--faults",
        "task_errors=0.05",
        "--timeline",
        str(target),
    )
    assert code == 1
    found = re.search(r"^seed (\d+) broke an invariant", out, re.MULTILINE)
    assert found is not None
    seed = int(found.group(1))
    assert out.rstrip().endswith(f"wrote {target} (timeline of seed {seed})")
    title = " ".join(texts(parse(target.read_text(encoding="utf-8")))[:3])
    assert f"seed {seed}, 4 workers, faults: task_errors=0.05" in title


@pytest.mark.usefixtures("importable")
def test_cli_timeline_draws_the_last_seed_when_all_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "last.svg"
    code, out, _ = simulate(
        capsys,
        "_sim_cli_workflows:Doubler",
        "--args",
        '{"items": [1, 2]}',
        "--seeds",
        "3..5",
        "--workers",
        "2",
        "--timeline",
        str(target),
    )
    assert code == 0
    assert "3 seeds passed check()" in out
    assert f"wrote {target} (timeline of seed 5)" in out
    svg = target.read_text(encoding="utf-8")
    assert "seed 5, 2 workers, no faults" in svg
    assert [g.get("data-worker") for g in groups(parse(svg), "worker")] == ["w0", "w1"]


@pytest.mark.usefixtures("importable")
def test_cli_timeline_in_a_missing_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = simulate(
        capsys,
        "_sim_cli_workflows:Doubler",
        "--args",
        '{"items": [1]}',
        "--timeline",
        str(tmp_path / "nowhere" / "run.svg"),
    )
    assert code == 2
    assert out == ""
    assert err.startswith("job-workflow: error: --timeline ")
    assert "does not exist" in err
