"""Render the pictures embedded in docs/graphs.md into docs/images/.

Draws the example workflow of ``examples/order_pipeline.py`` and two dry
runs of it (one that succeeds with a task skipped by its condition, one
that fails in a map task). Needs graphviz's ``dot`` program.

    .venv/bin/python examples/render_docs_images.py
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from order_pipeline import OrderPipeline  # noqa: E402

from job_workflow import dry_run  # noqa: E402
from job_workflow.viz import render  # noqa: E402

IMAGES = HERE.parent / "docs" / "images"


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    pictures = {
        "workflow.png": OrderPipeline,
        "dry-run.png": dry_run(OrderPipeline, order_ids=[1, 2, 3], notify=False),
        "dry-run-failed.png": dry_run(OrderPipeline, order_ids=[1, -2, 3]),
    }
    for filename, obj in pictures.items():
        path = render(obj, IMAGES / filename, format="png")
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
