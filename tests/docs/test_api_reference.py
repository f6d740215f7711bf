"""docs/api-reference.md is what examples/gen_api_reference.py writes today.

The page is generated from the public modules; this test regenerates it in
memory, so a renamed argument or a changed docstring that was not followed
by a regeneration fails here instead of leaving the page wrong.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "examples" / "gen_api_reference.py"
PAGE = ROOT / "docs" / "api-reference.md"

# The page covers modules that need the extras; without them, say so.
for extra in ("sqlalchemy", "networkx", "hypothesis", "opentelemetry.sdk"):
    pytest.importorskip(extra)


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_reference", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_page_is_up_to_date() -> None:
    expected = load_generator().render()
    current = PAGE.read_text(encoding="utf-8")
    assert current == expected, (
        "docs/api-reference.md is out of date: run "
        ".venv/bin/python examples/gen_api_reference.py"
    )


def test_rendering_twice_gives_the_same_page() -> None:
    generator = load_generator()
    assert generator.render() == generator.render()


def test_every_public_name_is_on_the_page() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for module_name in load_generator().MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert f"`{name}`" in page, (
                f"{module_name}.{name} is missing from docs/api-reference.md"
            )
