"""Running graphviz's ``dot`` program to turn DOT text into SVG or PNG.

``dot`` is called directly (no shell) with the DOT text on stdin. When it is
not installed, :class:`GraphvizNotFoundError` says how to install it; the
``dot`` and ``mermaid`` formats never need it.
"""

from __future__ import annotations

import shutil
import subprocess

INSTALL_HINT = (
    "install graphviz (Debian/Ubuntu: apt-get install graphviz; "
    "macOS: brew install graphviz); the dot and mermaid formats need nothing"
)

# PNGs are for people: render them sharper than graphviz's 96 dpi default.
_PNG_DPI = "144"
_TIMEOUT = 120.0


class RenderError(RuntimeError):
    """Graphviz could not turn a graph into a picture."""


class GraphvizNotFoundError(RenderError):
    """The graphviz ``dot`` program is not on PATH (needed for svg and png)."""

    def __init__(self, format: str) -> None:
        self.format = format
        super().__init__(
            f"rendering {format} needs the graphviz 'dot' program, which was "
            f"not found on PATH; {INSTALL_HINT}"
        )


def run_dot(dot_text: str, format: str) -> bytes:
    """The output of ``dot -T<format>`` for ``dot_text``."""
    program = shutil.which("dot")
    if program is None:
        raise GraphvizNotFoundError(format)
    command = [program, f"-T{format}"]
    if format == "png":
        command.append(f"-Gdpi={_PNG_DPI}")
    try:
        done = subprocess.run(
            command,
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except OSError as exc:
        raise RenderError(f"could not run {program!r}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"{program!r} took more than {_TIMEOUT:g}s") from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[0] if message else f"exit code {done.returncode}"
        raise RenderError(f"graphviz 'dot' failed to render {format}: {detail}")
    return done.stdout
