"""Every ```python block in README.md and docs/*.md runs, so no example rots.

The blocks of one file run in order in one namespace (a guide builds its
example step by step), on a fresh inline memory backend and a manual clock,
so an example with retry delays does not sleep for real.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from job_workflow import use_backend, use_clock
from job_workflow.backends.memory import MemoryBackend
from job_workflow.clock import ManualClock

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "document",
    [d for d in DOCUMENTS if python_blocks(d)],
    ids=lambda d: str(d.relative_to(ROOT)),
)
def test_document_examples_run(document: Path) -> None:
    module = "docs_" + re.sub(r"\W", "_", document.stem.lower())
    namespace: dict[str, object] = {"__name__": module}
    with use_backend(MemoryBackend()), use_clock(ManualClock()):
        for number, block in enumerate(python_blocks(document), start=1):
            code = compile(block, f"{document.name} block {number}", "exec")
            exec(code, namespace)


def test_readme_gives_the_two_commands_first() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = text[text.index("```") : text.index("```", text.index("```") + 3)]
    assert "make demo" in first_block
    assert "make test" in first_block
