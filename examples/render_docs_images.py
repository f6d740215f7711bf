"""Render the pictures embedded in docs/graphs.md into docs/images/.

Draws the example workflow of ``examples/order_pipeline.py``, two dry runs
of it (one that succeeds with a task skipped by its condition, one that
fails in a map task), and one simulation of it (with crashes and task
errors) twice: over the graph, and as a timeline. Graph pictures need
graphviz's ``dot`` program; the timeline is written as SVG and turned into
a PNG by ``rsvg-convert`` (Debian: ``apt-get install librsvg2-bin``) or,
failing that, ImageMagick's ``convert``.

    .venv/bin/python examples/render_docs_images.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from order_pipeline import OrderPipeline  # noqa: E402

from job_workflow import dry_run  # noqa: E402
from job_workflow.simulator import Faults, Simulation, SimulationResult  # noqa: E402
from job_workflow.viz import render, timeline  # noqa: E402

IMAGES = HERE.parent / "docs" / "images"
ZOOM = "1.5"  # the timeline PNG at the graphs' 144 dpi


def simulation() -> SimulationResult:
    """The run drawn in docs/graphs.md: seed 17 crashes workers three times."""
    faults = Faults(task_errors=0.15, crashes=0.04, restart_delay=8, alive_threshold=20)
    durations: dict[str, Any] = {
        "fetch": 2,
        "payment:validate": 1,
        "payment:charge": lambda ctx, rng: rng.uniform(3, 8),
        "summarize": 1,
        "notify_customers": 2,
        "publish_report": 3,
    }
    sim = Simulation(workers=3, seed=17, faults=faults, durations=durations)
    sim.enqueue(OrderPipeline, order_ids=[1, 2, 3, 4, 5, 6])
    sim.enqueue(OrderPipeline, order_ids=[7, 8, 9], notify=False)
    return sim.run_until_idle()


def svg_to_png(svg: Path, png: Path) -> bool:
    """Convert with rsvg-convert or ImageMagick; False when neither exists."""
    if shutil.which("rsvg-convert"):
        command = ["rsvg-convert", "--zoom", ZOOM, "-o", str(png), str(svg)]
    elif shutil.which("convert"):
        density = str(int(96 * float(ZOOM)))
        command = ["convert", "-density", density, str(svg), str(png)]
    else:
        return False
    subprocess.run(command, check=True)
    return True


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    result = simulation()
    pictures = {
        "workflow.png": OrderPipeline,
        "dry-run.png": dry_run(OrderPipeline, order_ids=[1, 2, 3], notify=False),
        "dry-run-failed.png": dry_run(OrderPipeline, order_ids=[1, -2, 3]),
        "simulation.png": result,
    }
    for filename, obj in pictures.items():
        path = render(obj, IMAGES / filename, format="png")
        print(f"wrote {path.relative_to(HERE.parent)}")
    svg = IMAGES / "timeline.svg"
    timeline(result, svg)
    print(f"wrote {svg.relative_to(HERE.parent)}")
    png = IMAGES / "timeline.png"
    if svg_to_png(svg, png):
        print(f"wrote {png.relative_to(HERE.parent)}")
    else:
        print("skipped timeline.png: install rsvg-convert (librsvg2-bin) or convert")


if __name__ == "__main__":
    main()
