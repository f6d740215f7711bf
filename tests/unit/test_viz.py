"""``job_workflow.viz``: networkx, DOT, Mermaid and rendered pictures (SPEC §8).

The tests read the outputs: which nodes and edges, what the labels say,
which colours and shapes stand for which option, the legend, namespace
clusters, and the overlay of a dry-run report. DOT must be byte-stable.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from job_workflow import Namespace, Workflow, argument, dry_run, task
from job_workflow.core._task import TaskOptions
from job_workflow.viz import (
    FORMATS,
    GraphvizNotFoundError,
    RenderError,
    render,
    to_dot,
    to_mermaid,
    to_networkx,
)

HERE = Path(__file__).resolve().parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="graphviz 'dot' is not installed (apt-get install graphviz)",
)


class Shop(Workflow):
    name = "tests.viz.Shop"
    queue = "shop"

    ids = argument(list[int])
    notify = argument(bool, default=True)

    @task(output={"count": int})
    def fetch(self, ctx):
        return {"count": len(ctx.arguments.ids)}

    class payment(Namespace):
        @task(depends_on=["fetch"], each=lambda ctx: ctx.arguments.ids)
        def validate(self, ctx):
            if ctx.each_value < 0:
                raise ValueError(f"negative id {ctx.each_value}")

        @task(
            depends_on=["validate"],
            each=lambda ctx: ctx.arguments.ids,
            enqueue={"queue": "payments", "concurrency": 4},
            retry={"count": 2, "strategy": "linear"},
            throttle={"key": "gateway", "limit": 10},
            output={"charge_id": str},
        )
        def charge(self, ctx):
            charge_id = ctx.skip_in_dry_run(lambda: "x", name="gateway", fallback="d")
            return {"charge_id": charge_id}

        class refund(Namespace):
            @task(depends_on=["payment:charge"])
            def plan(self, ctx):
                pass

    @task(depends_on=["payment:charge"], dependency_wait={"poll_timeout": 30})
    def summarize(self, ctx):
        pass

    @task(depends_on=[summarize], condition=lambda ctx: ctx.arguments.notify)
    def email(self, ctx):
        ctx.skip_in_dry_run(lambda: None, name="smtp")

    @task(depends_on=[summarize], throttle=3, timeout=5)
    def publish(self, ctx):
        pass


TASKS = [
    "fetch",
    "payment:validate",
    "payment:charge",
    "payment:refund:plan",
    "summarize",
    "email",
    "publish",
]
EDGES = {
    ("fetch", "payment:validate"),
    ("payment:validate", "payment:charge"),
    ("payment:charge", "payment:refund:plan"),
    ("payment:charge", "summarize"),
    ("summarize", "email"),
    ("summarize", "publish"),
}


def dot_nodes(dot: str) -> dict[str, str]:
    """Task node id -> its attribute text (legend nodes left out)."""
    found = re.findall(r'^\s*"([^"]+)" \[(.*)\];$', dot, re.MULTILINE)
    return {name: attrs for name, attrs in found if not name.startswith("legend_")}


def dot_edges(dot: str) -> dict[tuple[str, str], str]:
    found = re.findall(r'^\s*"([^"]+)" -> "([^"]+)"(.*);$', dot, re.MULTILINE)
    return {(a, b): rest for a, b, rest in found if not a.startswith("legend_")}


# --- networkx ---------------------------------------------------------------


def test_networkx_nodes_are_full_task_names_and_edges_point_to_dependents():
    graph = to_networkx(Shop)

    assert isinstance(graph, nx.DiGraph)
    assert list(graph.nodes) == TASKS
    assert set(graph.edges) == EDGES
    assert graph.graph["name"] == "tests.viz.Shop"
    assert graph.graph["kind"] == "workflow"


def test_networkx_nodes_carry_their_options():
    graph = to_networkx(Shop)
    charge = graph.nodes["payment:charge"]

    assert charge["short_name"] == "charge"
    assert charge["namespace"] == "payment"
    assert charge["is_map"] is True
    assert charge["enqueue"] == {
        "queue": "payments",
        "concurrency": 4,
        "conditional": False,
    }
    assert charge["retry"]["count"] == 2
    assert charge["retry"]["strategy"] == "linear"
    assert charge["throttle"] == {"key": "gateway", "limit": 10, "ttl": 180.0}
    assert charge["output"] == {"charge_id": "str"}
    assert isinstance(charge["options"], TaskOptions)

    assert graph.nodes["publish"]["throttle"]["key"] == "tests.viz.Shop:publish"
    assert graph.nodes["publish"]["timeout"] == 5.0
    assert graph.nodes["email"]["condition"] is True
    assert graph.nodes["fetch"]["condition"] is False
    assert graph.nodes["fetch"]["enqueue"] is None
    assert graph.nodes["summarize"]["dependency_wait"]["poll_timeout"] == 30.0
    assert graph.nodes["payment:refund:plan"]["namespace"] == "payment:refund"


def test_networkx_marks_edges_that_wait_for_sub_jobs():
    graph = to_networkx(Shop)

    assert graph.edges["payment:charge", "summarize"]["waits"] is True
    assert graph.edges["fetch", "payment:validate"]["waits"] is False


def test_networkx_graph_is_a_dag_in_task_order():
    graph = to_networkx(Shop)

    assert nx.is_directed_acyclic_graph(graph)
    order = list(nx.topological_sort(graph))
    assert order.index("fetch") < order.index("summarize") < order.index("email")


def test_networkx_of_a_report_adds_the_run():
    report = dry_run(Shop, ids=[1, 2, 3], notify=False)
    graph = to_networkx(report)

    assert graph.graph["kind"] == "dry_run"
    charge = graph.nodes["payment:charge"]
    assert charge["status"] == "ran"
    assert charge["iterations"] == 3
    assert charge["sub_job_count"] == 3
    assert [s["name"] for s in charge["skipped_side_effects"]] == ["gateway"] * 3
    assert graph.nodes["email"]["status"] == "skipped"
    assert graph.nodes["email"]["reason"] == "condition_not_met"


# --- DOT: nodes, edges, labels ----------------------------------------------


def test_dot_has_every_task_and_every_dependency():
    dot = to_dot(Shop)

    assert dot.startswith('digraph "tests.viz.Shop" {\n')
    assert dot.endswith("}\n")
    assert sorted(dot_nodes(dot)) == sorted(TASKS)
    assert set(dot_edges(dot)) == EDGES


def test_dot_labels_show_the_short_name_and_the_options():
    nodes = dot_nodes(to_dot(Shop))

    charge = nodes["payment:charge"]
    assert "<B>charge</B>" in charge
    assert "each (map task)" in charge
    assert "sub-jobs on payments, max 4" in charge
    assert "throttle 10 (gateway)" in charge
    assert "retry 2 (linear)" in charge
    assert 'tooltip="payment:charge"' in charge
    assert "waits 30s, then reschedules +5s" in nodes["summarize"]
    assert "only if condition" in nodes["email"]
    assert "throttle 3<" in nodes["publish"]
    assert "timeout 5s" in nodes["publish"]
    assert "<B>fetch</B>>" in nodes["fetch"]  # no option, no detail line


def test_dot_shapes_and_colours_encode_the_options():
    nodes = dot_nodes(to_dot(Shop))

    assert 'shape="box3d"' in nodes["payment:validate"]  # map task
    assert 'shape="box"' in nodes["fetch"]
    assert 'fillcolor="#DBEAFE"' in nodes["payment:charge"]  # enqueued
    assert 'fillcolor="#FFFFFF"' in nodes["fetch"]
    assert 'color="#C2410C"' in nodes["publish"]  # throttle border
    assert 'penwidth="2.6"' in nodes["publish"]
    assert 'style="rounded,filled,dashed"' in nodes["email"]  # condition
    assert 'style="rounded,filled"' in nodes["fetch"]
    assert 'COLOR="#7C3AED">retry 2' in nodes["payment:charge"]  # retry line
    assert 'COLOR="#1D4ED8">waits 30s' in nodes["summarize"]  # wait line


def test_dot_draws_waiting_edges_bold_and_blue():
    edges = dot_edges(to_dot(Shop))

    assert 'color="#1D4ED8"' in edges[("payment:charge", "summarize")]
    assert 'penwidth="2.2"' in edges[("payment:charge", "summarize")]
    assert edges[("fetch", "payment:validate")] == ""


def test_dot_namespaces_are_nested_clusters():
    dot = to_dot(Shop)

    payment = dot.index('label="payment:"')
    refund = dot.index('label="payment:refund:"')
    assert re.search(r"subgraph cluster_1 \{\n\s+graph \[label=\"payment:\"", dot)
    assert re.search(
        r"subgraph cluster_2 \{\n\s+graph \[label=\"payment:refund:\"", dot
    )
    assert payment < dot.index('"payment:charge" [') < refund
    assert refund < dot.index('"payment:refund:plan" [')
    assert dot.index('"fetch" [') < dot.index("subgraph cluster_1")


def test_dot_legend_explains_every_encoding():
    legend = legend_of(to_dot(Shop))

    for text in [
        'label="task"',
        'label="map task (each)", shape="box3d"',
        'fillcolor="#DBEAFE"',
        "retry 3 (exponential)",
        'color="#C2410C"',
        'label="has a condition", shape="box", style="rounded,filled,dashed"',
        'label="waits for sub-jobs", color="#1D4ED8"',
    ]:
        assert text in legend, text
    assert 'label="legend"' in legend


def test_dot_is_byte_stable():
    assert to_dot(Shop) == to_dot(Shop)
    assert to_dot(Shop).encode() == to_dot(Shop).encode()


def _define_twice():
    def make():
        class Redefined(Workflow):
            @task(output={"n": int})
            def first(self, ctx):
                return {"n": 1}

            @task(depends_on=[first], each=lambda ctx: [1], enqueue=True)
            def second(self, ctx):
                pass

        return Redefined

    return make(), make()


def test_dot_is_stable_across_a_class_redefinition():
    first, second = _define_twice()

    assert first is not second
    assert to_dot(first) == to_dot(second)
    assert to_mermaid(first) == to_mermaid(second)


def test_dot_is_stable_across_processes_and_hash_seeds():
    code = (
        "import _cli_workflows, sys; from job_workflow.viz import to_dot; "
        "sys.stdout.write(to_dot(_cli_workflows.Orders))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=str(HERE), PYTHONHASHSEED=seed),
            timeout=120,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }

    assert len(outputs) == 1


def test_dot_escapes_names_and_labels():
    class Odd(Workflow):
        name = 'tests.viz."Odd"'

        @task(name='say "<hi> & bye"')
        def step(self, ctx):
            pass

    dot = to_dot(Odd)

    assert 'digraph "tests.viz.\\"Odd\\"" {' in dot
    assert '"say \\"<hi> & bye\\"" [' in dot
    assert "<B>say &quot;&lt;hi&gt; &amp; bye&quot;</B>" in dot


# --- DOT of a dry-run report ------------------------------------------------


def test_report_overlay_colours_and_labels():
    report = dry_run(Shop, ids=[1, 2, 3], notify=False)
    dot = to_dot(report)
    nodes = dot_nodes(dot)

    assert dot.startswith('digraph "dry run of tests.viz.Shop: succeeded" {')
    assert (
        'label=<dry run of tests.viz.Shop: succeeded<BR ALIGN="LEFT"/>'
        '<FONT POINT-SIZE="11" COLOR="#4B5563">'
        "arguments: ids=[1, 2, 3], notify=False</FONT>"
    ) in dot
    assert 'fillcolor="#D1FAE5"' in nodes["fetch"]  # ran: green
    assert "ran, 1 iteration<" in nodes["fetch"]
    charge = nodes["payment:charge"]
    assert "ran, 3 iterations" in charge
    assert "3 sub-jobs on payments, max 4" in charge
    assert "skipped side effects: gateway x3" in charge
    assert 'shape="box3d"' in charge  # still a map task
    assert "only if condition" not in nodes["email"]  # the run replaces options
    assert "skipped: condition_not_met" in nodes["email"]
    assert 'fillcolor="#F3F4F6"' in nodes["email"]
    assert "dashed" in nodes["email"]
    assert set(dot_edges(dot)) == EDGES


def test_report_overlay_of_a_failure():
    report = dry_run(Shop, ids=[1, -2, 3])
    nodes = dot_nodes(to_dot(report))

    validate = nodes["payment:validate"]
    assert 'fillcolor="#FEE2E2"' in validate  # failed: red
    assert 'color="#B91C1C"' in validate
    assert "failed: ValueError: negative id -2" in validate
    assert "1 iteration completed" in validate
    assert "not run" in nodes["summarize"]
    assert "dotted" in nodes["summarize"]


def legend_of(dot: str) -> str:
    return dot[dot.index("subgraph cluster_legend") :]


def test_report_legend_lists_the_statuses_that_appear():
    failed = legend_of(to_dot(dry_run(Shop, ids=[-1])))
    skipped = legend_of(to_dot(dry_run(Shop, ids=[1], notify=False)))

    for label in [
        'label="ran"',
        'label="failed"',
        'label="not run (an earlier task failed)"',
        'label="map task (each)"',
    ]:
        assert label in failed, label
    assert 'label="skipped (condition not met)"' not in failed
    assert 'label="skipped (condition not met)"' in skipped
    assert 'label="failed"' not in skipped
    assert 'label="waits for sub-jobs"' in skipped
    assert '"legend_enqueued" -> "legend_waiting"' in skipped


def test_legend_explains_only_what_the_graph_shows():
    class Small(Workflow):
        name = "tests.viz.Small"

        @task
        def a(self, ctx):
            pass

        @task(depends_on=[a], throttle=2)
        def b(self, ctx):
            pass

    legend = legend_of(to_dot(Small))

    assert 'label="task"' in legend
    assert "label=<throttled<BR/>" in legend
    for absent in ["map task", "has a condition", "retried", "enqueued", "waits"]:
        assert absent not in legend, absent
    assert '"legend_task" -> "legend_throttle" [style="invis"];' in legend


def test_a_single_legend_entry_has_no_chain():
    class One(Workflow):
        name = "tests.viz.One"

        @task
        def only(self, ctx):
            pass

    legend = legend_of(to_dot(One))

    assert '"legend_task" [label="task"' in legend
    assert "->" not in legend
    assert "~~~" not in to_mermaid(One)


# --- Mermaid ----------------------------------------------------------------


def test_mermaid_flowchart_nodes_edges_and_namespaces():
    text = to_mermaid(Shop)
    lines = text.splitlines()

    assert lines[:4] == ["---", 'title: "tests.viz.Shop"', "---", "flowchart LR"]
    assert '    n0("<b>fetch</b>")' in lines
    assert any(line.strip().startswith('n1[["<b>validate</b>') for line in lines)
    assert '    subgraph ns0 ["payment:"]' in lines
    assert '        subgraph ns1 ["payment:refund:"]' in lines
    assert "    n0 --> n1" in lines
    assert "    n2 ==> n4" in lines  # waits for the charge sub-jobs
    edges = [line for line in lines if re.match(r"^    n\d+ (-->|==>) n\d+$", line)]
    assert len(edges) == len(EDGES)


def test_mermaid_styles_and_link_styles():
    text = to_mermaid(Shop)
    lines = text.splitlines()

    assert (
        "    style n2 fill:#DBEAFE,stroke:#C2410C,stroke-width:2.6px,color:#111827"
        in lines
    )
    assert any(
        line.startswith("    style n5 ") and "stroke-dasharray:6 4" in line
        for line in lines
    )
    link_style = next(line for line in lines if "linkStyle" in line)
    numbers = [int(n) for n in link_style.split()[1].split(",")]
    links = [line for line in lines if re.search(r"(-->|==>|~~~)", line)]
    flat = []
    for line in links:
        flat += re.findall(r"(-->|==>\|[^|]*\||==>|~~~)", line)
    assert [i for i, arrow in enumerate(flat) if arrow.startswith("==>")] == numbers


def test_mermaid_legend():
    text = to_mermaid(Shop)

    assert '    subgraph legend ["legend"]' in text
    assert 'legend_map[["map task (each)"]]' in text
    assert "legend_enqueue ==>|waits for sub-jobs| legend_waiting" in text


def test_mermaid_escapes_labels():
    class Quoted(Workflow):
        name = "tests.viz.Quoted"

        @task(name='a "b" <c> #1')
        def step(self, ctx):
            pass

    text = to_mermaid(Quoted)

    assert 'n0("<b>a #quot;b#quot; #lt;c#gt; #35;1</b>")' in text


def test_mermaid_of_a_report():
    text = to_mermaid(dry_run(Shop, ids=[1, 2], notify=False))

    assert 'title: "dry run of tests.viz.Shop: succeeded"' in text
    assert "<small>2 sub-jobs on payments, max 4</small>" in text
    assert "<small>skipped: condition_not_met</small>" in text
    assert "style n0 fill:#D1FAE5" in text
    assert 'legend_ran("ran")' in text
    assert 'legend_skipped("skipped (condition not met)")' in text
    assert "legend_failed" not in text


# --- render -----------------------------------------------------------------


def test_render_dot_and_mermaid_write_text(tmp_path):
    dot_path = render(Shop, tmp_path / "shop.dot", format="dot")
    mermaid_path = render(Shop, str(tmp_path / "shop.mmd"), format="mermaid")

    assert dot_path.read_text() == to_dot(Shop)
    assert mermaid_path.read_text() == to_mermaid(Shop)


def test_render_rejects_unknown_formats(tmp_path):
    assert FORMATS == ("svg", "png", "dot", "mermaid")
    with pytest.raises(ValueError, match=r"format='jpeg'.*svg, png, dot, mermaid"):
        render(Shop, tmp_path / "x.jpeg", format="jpeg")


@pytest.mark.parametrize("obj", [42, "Shop", Workflow, object()])
def test_only_workflows_and_reports_can_be_drawn(obj, tmp_path):
    with pytest.raises(TypeError, match=rf"type {type(obj).__name__}\b.*Workflow"):
        to_dot(obj)
    with pytest.raises(TypeError):
        render(obj, tmp_path / "x.dot", format="dot")


@needs_dot
def test_render_svg_contains_the_task_names(tmp_path):
    svg = render(Shop, tmp_path / "shop.svg").read_text()

    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    for name in ["fetch", "validate", "charge", "plan", "summarize", "email"]:
        assert f">{name}</text>" in svg
    assert "payment:" in svg
    assert "legend" in svg


@needs_dot
def test_render_png_is_a_png(tmp_path):
    data = render(Shop, tmp_path / "shop.png", format="png").read_bytes()

    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1000


@needs_dot
def test_render_svg_of_a_report(tmp_path):
    svg = html.unescape(
        render(dry_run(Shop, ids=[1, -1]), tmp_path / "r.svg").read_text()
    )

    assert "failed: ValueError: negative id -1" in svg
    assert "#fee2e2" in svg.lower()


@pytest.mark.parametrize("format", ["svg", "png"])
def test_pictures_without_graphviz_raise_one_clear_error(format, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    target = tmp_path / f"shop.{format}"

    with pytest.raises(GraphvizNotFoundError) as caught:
        render(Shop, target, format=format)

    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value, RenderError)
    message = str(caught.value)
    assert "graphviz 'dot' program" in message
    assert "apt-get install graphviz" in message
    assert "\n" not in message
    assert not target.exists()


def test_dot_and_mermaid_need_no_graphviz(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    assert render(Shop, tmp_path / "a.dot", format="dot").exists()
    assert render(Shop, tmp_path / "a.mmd", format="mermaid").exists()


def test_a_failing_dot_program_is_a_render_error(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    script = fake / "dot"
    script.write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))

    with pytest.raises(RenderError, match="failed to render svg: Error: syntax error"):
        render(Shop, tmp_path / "x.svg")


def test_importing_viz_without_networkx_says_what_to_install():
    code = (
        "import sys; sys.modules['networkx'] = None\n"
        "try:\n    import job_workflow.viz\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert done.stdout.strip().splitlines() == [
        "job_workflow.viz needs networkx: pip install 'job-workflow[viz]'"
    ]


def test_large_workflows_draw_without_trouble():
    def body(self, ctx):
        pass

    namespace = {
        f"t{i}": task(depends_on=[f"t{i - 1}"] if i else [])(body) for i in range(300)
    }
    Big = type(Workflow)("Big", (Workflow,), {"name": "tests.viz.Big", **namespace})

    dot = to_dot(Big)
    assert len(dot_nodes(dot)) == 300
    assert len(dot_edges(dot)) == 299
    assert to_mermaid(Big).count(" --> ") == 299
