"""A simulation as a timeline: one row per worker, virtual time across.

Hand-written SVG, no dependency: every number is formatted with fixed
precision and everything is written in trace order, so the same result
gives the same bytes. What a row shows:

- task bodies as bars coloured per task (one colour per task name, in the
  workflows' task order), labelled ``task[index]`` when the bar is wide
  enough (shortened to the name without its namespace, then to
  ``[index]``, before giving up);
- waits: polling for sub-jobs (grey, hatched), retry backoff (amber),
  throttle polling (violet); contiguous polls of one job are one bar;
- a crashed worker's time down (pale red, hatched) from the crash (a red
  cross) to its restart (a green dashed line labelled with the new
  incarnation, ``#1``): every incarnation of ``w0`` stays on ``w0``'s row;
- small markers above the bars: a retry, a reschedule, a duplicate
  delivery, a throttle lease expiring, a job failing, and (on the dead
  worker's row) its claimed jobs going back to the queue; markers that
  would overlap are set side by side.

A deadlocked run ends with a red line: the polls still under way run to it.
Every bar and marker carries a ``<title>`` (a tooltip in a browser).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from job_workflow.core._workflow import registry
from job_workflow.errors import UnknownWorkflowError
from job_workflow.simulator import SimulationResult, Span, TraceEntry
from job_workflow.viz._simulation import events_text, headline, outcome_text, seconds

FONT = "Helvetica, Arial, sans-serif"
TEXT = "#111827"
MUTED = "#4B5563"
GRID = "#E5E7EB"
ROW_SHADE = "#F9FAFB"

# Task colours: mid tones that keep dark label text readable and stay clear
# of the wait colours (amber, violet, grey) and of the crash red. Neighbours
# in the list differ in hue, since consecutive tasks run side by side.
PALETTE = (
    "#60A5FA",  # blue
    "#34D399",  # green
    "#F472B6",  # pink
    "#FDE047",  # yellow
    "#818CF8",  # indigo
    "#2DD4BF",  # teal
    "#FDA4AF",  # rose
    "#A3E635",  # lime
    "#67E8F9",  # cyan
    "#F0ABFC",  # fuchsia
    "#FDBA74",  # light orange
    "#C4B5FD",  # lavender
)

MIN_WIDTH = 480
LEFT = 128  # worker labels
RIGHT = 28
ROW = 44
BAR_TOP = 15  # within a row: the marker lane is above the bar
BAR = 22
CHAR = 6.2  # average width of an 11px label character
SMALL_CHAR = 6.8  # of a 12px character
TICK_SPACING = 90  # pixels between axis ticks, roughly


@dataclass(frozen=True, slots=True)
class _Wait:
    key: str
    label: str
    fill: str
    stroke: str
    dash: str = ""


WAITS = {
    "poll": _Wait("poll", "polling for sub-jobs", "url(#jw-poll)", "#9CA3AF"),
    "retry": _Wait("retry", "retry backoff", "#FEF3C7", "#D97706", "3 2"),
    "throttle": _Wait("throttle", "throttle wait", "#EDE9FE", "#7C3AED", "1 2"),
}


@dataclass(frozen=True, slots=True)
class _Marker:
    key: str
    label: str
    colour: str
    shape: str  # circle | ring | triangle | diamond | square | up


MARKERS = {
    "task.retry": _Marker("retry", "retry", "#D97706", "circle"),
    "job.reschedule": _Marker("reschedule", "reschedule", "#2563EB", "triangle"),
    "fault.duplicate_delivery": _Marker(
        "duplicate", "duplicate delivery", "#C026D3", "diamond"
    ),
    "fault.lease_expiry": _Marker("lease", "lease expired", "#7C3AED", "square"),
    "job.fail": _Marker("fail", "job failed", "#991B1B", "up"),
    "worker.recover": _Marker(
        "recover", "a dead worker's jobs released", "#6B7280", "ring"
    ),
}
MARKER_GAP = 10.0  # markers closer than this on one row are set side by side
CRASH = "#DC2626"
RESTART = "#059669"
DOWN = "url(#jw-down)"
DEADLOCK = "#B91C1C"


def timeline_svg(result: SimulationResult, width: int = 1200) -> str:
    """The SVG text of ``result``'s timeline, ``width`` pixels wide."""
    if not isinstance(width, int) or isinstance(width, bool) or width < MIN_WIDTH:
        raise ValueError(f"width must be an int >= {MIN_WIDTH}, got {width!r}")
    return _Timeline(result, width).svg()


class _Timeline:
    def __init__(self, result: SimulationResult, width: int) -> None:
        self.result = result
        self.width = width
        self.rows = _rows(result)
        self.row_of = {name: n for n, name in enumerate(self.rows)}
        self.end = max(result.metrics.makespan, 0.0)
        self.scale = (width - LEFT - RIGHT) / (self.end or 1.0)
        self.details = _wrap(_details(result), (width - 32) / SMALL_CHAR)
        self.top = 58 + 16 * len(self.details)
        self.colours = _task_colours(result)
        self.used: set[str] = set()  # legend keys of what was drawn

    # -- geometry --

    def x(self, moment: float) -> float:
        return LEFT + max(0.0, min(moment, self.end)) * self.scale

    def row_y(self, worker: str | None) -> float | None:
        row = self.row_of.get((worker or "").split("#")[0])
        return None if row is None else self.top + row * ROW

    @property
    def rows_bottom(self) -> float:
        return self.top + len(self.rows) * ROW

    # -- the document --

    def svg(self) -> str:
        body = [
            *self._title(),
            *self._rows_background(),
            *self._grid(),
            *self._down_times(),
            *self._spans(),
            *self._restarts(),
            *self._markers(),
            *self._crashes(),
            *self._deadlock(),
            *self._axis(),
        ]
        legend, height = self._legend(self.rows_bottom + 54)
        head = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{_n(height)}" viewBox="0 0 {self.width} {_n(height)}" '
            f'font-family="{FONT}" font-size="11" fill="{TEXT}">',
            f"<title>{_esc(self._caption())}</title>",
            _DEFS,
            '<rect width="100%" height="100%" fill="#FFFFFF"/>',
        ]
        return "\n".join([*head, *body, *legend, "</svg>"]) + "\n"

    def _caption(self) -> str:
        names = list(dict.fromkeys(name for _, name, _ in self.result.workflows))
        return f"simulation timeline: {', '.join(names) or 'no workflow'}"

    def _title(self) -> list[str]:
        lines = [_text(16, 26, self._caption(), size=16, weight="bold")]
        for n, line in enumerate(self.details):
            lines.append(_text(16, 46 + 16 * n, line, size=12, fill=MUTED))
        return lines

    def _rows_background(self) -> Iterator[str]:
        busy, polling = (
            self.result.metrics.worker_busy,
            self.result.metrics.worker_polling,
        )
        for n, name in enumerate(self.rows):
            y = self.top + n * ROW
            shade = ROW_SHADE if n % 2 == 0 else "#FFFFFF"
            shares = f"busy {self._share(busy.get(name, 0.0))}"
            shares += f" · poll {self._share(polling.get(name, 0.0))}"
            yield _group(
                {"class": "worker", "data-worker": name},
                _rect(0, y, self.width, ROW, shade),
                _text(16, y + 20, name, size=13, weight="bold"),
                _text(16, y + 35, shares, size=10, fill=MUTED),
            )

    def _share(self, value: float) -> str:
        return f"{round(100 * value / self.end) if self.end else 0}%"

    def _grid(self) -> Iterator[str]:
        for moment in _ticks(self.end, self.width - LEFT - RIGHT):
            x = _n(self.x(moment))
            yield (
                f'<line x1="{x}" y1="{_n(self.top)}" x2="{x}" '
                f'y2="{_n(self.rows_bottom)}" stroke="{GRID}" stroke-width="1"/>'
            )

    def _axis(self) -> Iterator[str]:
        y = self.rows_bottom
        parts = [
            f'<line x1="{LEFT}" y1="{_n(y)}" x2="{_n(self.x(self.end))}" y2="{_n(y)}" '
            f'stroke="{MUTED}" stroke-width="1"/>'
        ]
        for moment in _ticks(self.end, self.width - LEFT - RIGHT):
            x = _n(self.x(moment))
            parts.append(
                f'<line x1="{x}" y1="{_n(y)}" x2="{x}" y2="{_n(y + 5)}" '
                f'stroke="{MUTED}" stroke-width="1"/>'
            )
            parts.append(
                _text(
                    self.x(moment),
                    y + 17,
                    f"{seconds(moment)} s",
                    anchor="middle",
                    size=10,
                    css_class="tick",
                )
            )
        caption = "virtual time (seconds since the start)"
        parts.append(_text(LEFT, y + 34, caption, size=10, fill=MUTED))
        yield _group({"class": "axis"}, *parts)

    # -- bars --

    def _spans(self) -> Iterator[str]:
        for span in _merged(self.result.spans):
            y = self.row_y(span.worker)
            if y is None:
                continue
            start = span.start - self.result.start
            end = span.end - self.result.start
            x0, x1 = self.x(start), self.x(end)
            when = f"{seconds(start)} s to {seconds(end)} s"
            if span.kind == "task":
                yield from self._task_bar(span, x0, x1, y, when)
            else:
                yield from self._wait_bar(span, x0, x1, y, when)

    def _task_bar(
        self, span: Span, x0: float, x1: float, y: float, when: str
    ) -> Iterator[str]:
        name = _iteration(span.task or "?", span.each_index)
        self.used.add(f"task:{span.task}")
        width = max(x1 - x0, 1.5)
        tip = f"{name} on {span.worker}, job {span.job_id}, {when}"
        fill = self.colours.get(span.task or "", "#D1D5DB")
        parts = [
            f"<title>{_esc(tip)}</title>",
            f'<rect x="{_n(x0)}" y="{_n(y + BAR_TOP)}" width="{_n(width)}" '
            f'height="{BAR}" rx="2" fill="{fill}" stroke="#1F2937" '
            'stroke-width="0.6"/>',
        ]
        label = _fitting(span.task or "?", span.each_index, width - 6)
        if label:
            parts.append(
                _text(x0 + width / 2, y + BAR_TOP + 15, label, anchor="middle")
            )
        yield _group(
            {
                "class": "task",
                "data-task": span.task or "",
                "data-each-index": "" if span.each_index is None else span.each_index,
                **self._span_data(span),
            },
            *parts,
        )

    def _span_data(self, span: Span) -> dict[str, object]:
        return {
            "data-worker": span.worker,
            "data-job": span.job_id or "",
            "data-start": seconds(span.start - self.result.start),
            "data-end": seconds(span.end - self.result.start),
        }

    def _wait_bar(
        self, span: Span, x0: float, x1: float, y: float, when: str
    ) -> Iterator[str]:
        look = WAITS.get(span.kind)
        if look is None or x1 - x0 <= 0:
            return
        self.used.add(f"wait:{look.key}")
        dash = f' stroke-dasharray="{look.dash}"' if look.dash else ""
        inset = 4  # waits are thinner than task bars
        tip = f"{look.label} on {span.worker}, job {span.job_id}, {when}"
        yield _group(
            {"class": "wait", "data-kind": look.key, **self._span_data(span)},
            f"<title>{_esc(tip)}</title>",
            f'<rect x="{_n(x0)}" y="{_n(y + BAR_TOP + inset)}" '
            f'width="{_n(x1 - x0)}" height="{BAR - 2 * inset}" fill="{look.fill}" '
            f'stroke="{look.stroke}" stroke-width="0.8"{dash}/>',
        )

    # -- crashes and restarts --

    def _down_times(self) -> Iterator[str]:
        """Pale hatched stretches from each crash to the restart that follows."""
        down: dict[str, float] = {}
        for entry in self.result.trace:
            row = (entry.worker or "").split("#")[0]
            if entry.event == "worker.crash":
                down[row] = entry.time
            elif entry.event == "worker.restart" and row in down:
                yield from self._down(row, down.pop(row), entry.time)
        for row, since in sorted(down.items()):
            yield from self._down(row, since, self.end)

    def _down(self, row: str, start: float, end: float) -> Iterator[str]:
        y = self.row_y(row)
        if y is None:
            return
        self.used.add("down")
        x0, x1 = self.x(start), self.x(end)
        tip = f"{row} down from {seconds(start)} s to {seconds(end)} s"
        yield _group(
            {"class": "down", "data-worker": row},
            f"<title>{_esc(tip)}</title>",
            _rect(x0, y + 3, max(x1 - x0, 1), ROW - 6, DOWN),
        )

    def _restarts(self) -> Iterator[str]:
        for entry in _events(self.result.trace, "worker.restart"):
            y = self.row_y(entry.worker)
            if y is None:
                continue
            self.used.add("restart")
            x = _n(self.x(entry.time))
            incarnation = "#" + (entry.worker or "").partition("#")[2]
            tip = f"{entry.worker} starts at {seconds(entry.time)} s"
            yield _group(
                {"class": "restart", "data-worker": entry.worker or ""},
                f"<title>{_esc(tip)}</title>",
                f'<line x1="{x}" y1="{_n(y + 2)}" x2="{x}" y2="{_n(y + ROW - 2)}" '
                f'stroke="{RESTART}" stroke-width="1.6" stroke-dasharray="4 2"/>',
                _text(
                    self.x(entry.time) + 3,
                    y + ROW - 4,
                    incarnation,
                    size=9,
                    fill=RESTART,
                ),
            )

    def _crashes(self) -> Iterator[str]:
        for entry in _events(self.result.trace, "worker.crash"):
            y = self.row_y(entry.worker)
            if y is None:
                continue
            self.used.add("crash")
            cx, cy, r = self.x(entry.time), y + BAR_TOP + BAR / 2, 6.5
            where = entry.detail.get("reason", "?")
            task = entry.detail.get("task_name")
            tip = f"{entry.worker} crashed at {seconds(entry.time)} s ({where}"
            tip += f" in {task})" if task else ")"
            cross = (
                f"M{_n(cx - r)},{_n(cy - r)} L{_n(cx + r)},{_n(cy + r)} "
                f"M{_n(cx - r)},{_n(cy + r)} L{_n(cx + r)},{_n(cy - r)}"
            )
            yield _group(
                {
                    "class": "crash",
                    "data-worker": entry.worker or "",
                    "data-time": seconds(entry.time),
                    "data-task": task or "",
                },
                f"<title>{_esc(tip)}</title>",
                f'<path d="{cross}" stroke="#FFFFFF" stroke-width="6" '
                'stroke-linecap="round"/>',
                f'<path d="{cross}" stroke="{CRASH}" stroke-width="3" '
                'stroke-linecap="round"/>',
            )

    def _deadlock(self) -> Iterator[str]:
        if not self.result.deadlocked:
            return
        self.used.add("deadlock")
        x = _n(self.x(self.end))
        yield _group(
            {"class": "deadlock", "data-time": seconds(self.end)},
            f'<line x1="{x}" y1="{_n(self.top - 4)}" x2="{x}" '
            f'y2="{_n(self.rows_bottom)}" stroke="{DEADLOCK}" stroke-width="2.5"/>',
            _text(
                self.x(self.end) - 4,
                self.top - 8,
                "deadlock: nothing can move",
                anchor="end",
                fill=DEADLOCK,
                weight="bold",
            ),
        )

    # -- small markers --

    def _markers(self) -> Iterator[str]:
        last: dict[float, float] = {}  # row top -> x of its last marker
        for entry in self.result.trace:
            marker = MARKERS.get(entry.event)
            # A recovery is the simulation's; it belongs on the dead worker's row.
            worker = entry.worker or str(entry.detail.get("reason", ""))
            y = self.row_y(worker)
            if marker is None or y is None:
                continue
            self.used.add(f"marker:{marker.key}")
            x = max(self.x(entry.time), last.get(y, -MARKER_GAP) + MARKER_GAP)
            last[y] = x
            yield _group(
                {
                    "class": "marker",
                    "data-kind": marker.key,
                    "data-worker": worker,
                    "data-time": seconds(entry.time),
                },
                f"<title>{_esc(_marker_tip(marker, entry))}</title>",
                _glyph(marker, x, y + 8),
            )

    # -- the legend --

    def _legend(self, top: float) -> tuple[list[str], float]:
        """The legend's elements and the picture's full height."""
        flow = _Flow(LEFT, self.width - RIGHT, top)
        lines = [_text(16, top + 10, "legend", size=12, weight="bold", fill=MUTED)]
        for task, colour in self.colours.items():
            if f"task:{task}" in self.used:
                swatch = _rect(0, 0, 18, 12, colour, stroke="#1F2937", stroke_width=0.6)
                lines += flow.item(f"task:{task}", swatch, f"task {task}")
        flow.newline()
        for wait in WAITS.values():
            if f"wait:{wait.key}" in self.used:
                dash = f' stroke-dasharray="{wait.dash}"' if wait.dash else ""
                swatch = (
                    f'<rect x="0" y="2" width="18" height="9" fill="{wait.fill}" '
                    f'stroke="{wait.stroke}" stroke-width="0.8"{dash}/>'
                )
                lines += flow.item(f"wait:{wait.key}", swatch, wait.label)
        if "down" in self.used:
            swatch = _rect(0, 0, 18, 12, DOWN)
            lines += flow.item("down", swatch, "worker down (crashed)")
        flow.newline()
        lines += self._event_legend(flow)
        return lines, flow.bottom() + 16

    def _event_legend(self, flow: _Flow) -> list[str]:
        lines: list[str] = []
        if "crash" in self.used:
            cross = "M3,0 L15,12 M3,12 L15,0"
            glyph = f'<path d="{cross}" stroke="{CRASH}" stroke-width="3"/>'
            lines += flow.item("crash", glyph, "worker crash")
        if "restart" in self.used:
            glyph = (
                f'<line x1="9" y1="-2" x2="9" y2="14" stroke="{RESTART}" '
                'stroke-width="1.6" stroke-dasharray="4 2"/>'
            )
            lines += flow.item("restart", glyph, "restart (#n: new incarnation)")
        for marker in MARKERS.values():
            if f"marker:{marker.key}" in self.used:
                key = f"marker:{marker.key}"
                lines += flow.item(key, _glyph(marker, 9, 6), marker.label)
        if "deadlock" in self.used:
            glyph = (
                f'<line x1="9" y1="-2" x2="9" y2="14" stroke="{DEADLOCK}" '
                'stroke-width="2.5"/>'
            )
            lines += flow.item("deadlock", glyph, "deadlock")
        return lines


class _Flow:
    """Legend items laid out left to right, wrapping at the right edge."""

    def __init__(self, left: float, right: float, top: float) -> None:
        self.left, self.right = left, right
        self.x, self.y = left, top
        self.empty_line = True

    def item(self, key: str, swatch: str, label: str) -> list[str]:
        width = 18 + 6 + len(label) * CHAR + 22
        if not self.empty_line and self.x + width > self.right:
            self.newline()
        x, y = self.x, self.y
        self.x += width
        self.empty_line = False
        item = _group(
            {"class": "legend-item", "data-key": key},
            f'<g transform="translate({_n(x)},{_n(y)})">{swatch}</g>',
            _text(x + 24, y + 10, label),
        )
        return [item]

    def newline(self) -> None:
        if not self.empty_line:
            self.x, self.y = self.left, self.y + 20
            self.empty_line = True

    def bottom(self) -> float:
        return self.y + (0 if self.empty_line else 20)


# -- what to draw --


def _details(result: SimulationResult) -> list[str]:
    details = [headline(result), outcome_text(result), events_text(result)]
    if result.deadlocked:
        details.append("DEADLOCKED")
    return details


def _wrap(parts: list[str], room: float) -> list[str]:
    """``parts`` joined by ``"; "`` into lines of at most ``room`` characters.

    A part too long for a line of its own is broken after its commas.
    """
    lines: list[str] = []
    for part in parts:
        pieces = part.split(", ")
        for n, piece in enumerate(pieces):
            glue = "; " if n == 0 else " "  # a piece but the last ends with ","
            text = piece + ("," if n < len(pieces) - 1 else "")
            if lines and len(lines[-1]) + len(glue) + len(text) <= room:
                lines[-1] += glue + text
            else:
                lines.append(text)
    return lines


def _rows(result: SimulationResult) -> list[str]:
    names = list(result.metrics.worker_busy)
    return names or [f"w{n}" for n in range(result.workers)]


def _task_colours(result: SimulationResult) -> dict[str, str]:
    """Task name -> colour: the workflows' task order, then any other name."""
    names: list[str] = []
    for workflow in dict.fromkeys(name for _, name, _ in result.workflows):
        try:
            names += [task.name for task in registry.get(workflow).tasks]
        except UnknownWorkflowError:
            continue
    names += sorted({s.task for s in result.spans if s.task is not None})
    ordered = list(dict.fromkeys(names))
    return {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(ordered)}


def _merged(spans: Sequence[Span]) -> list[Span]:
    """Spans in order, with back-to-back waits of one kind and job joined."""
    merged: list[Span] = []
    last: dict[str, int] = {}
    for span in spans:
        index = last.get(span.worker)
        if index is not None and span.kind != "task":
            previous = merged[index]
            if (
                previous.kind == span.kind
                and previous.job_id == span.job_id
                and math.isclose(previous.end, span.start)
            ):
                merged[index] = Span(
                    previous.worker,
                    previous.start,
                    span.end,
                    previous.kind,
                    previous.job_id,
                    None,
                    None,
                )
                continue
        last[span.worker] = len(merged)
        merged.append(span)
    return merged


def _events(trace: Sequence[TraceEntry], name: str) -> Iterator[TraceEntry]:
    return (entry for entry in trace if entry.event == name)


def _ticks(end: float, pixels: float) -> list[float]:
    """Round moments (1, 2 or 5 times a power of ten apart) from 0 to ``end``."""
    if end <= 0:
        return [0.0]
    raw = end / max(pixels / TICK_SPACING, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    count = int(end / step + 1e-9)
    return [round(n * step, 9) for n in range(count + 1)]


def _marker_tip(marker: _Marker, entry: TraceEntry) -> str:
    at = f"at {seconds(entry.time)} s"
    if entry.event == "worker.recover":
        released = entry.detail.get("sub_job_count", 0)
        return f"{marker.label}: {released} job(s) of {entry.detail.get('reason')} {at}"
    tip = f"{marker.label} on {entry.worker}: job {entry.job_id} {at}"
    task = entry.detail.get("task_name")
    if task:
        tip += f" ({_iteration(str(task), entry.detail.get('each_index'))})"
    return tip


def _iteration(task: str, index: object) -> str:
    return task if index is None else f"{task}[{index}]"


def _fitting(task: str, index: int | None, room: float) -> str:
    """The longest of ``task[i]``, ``short[i]``, ``[i]`` that fits ``room``."""
    short = task.rsplit(":", 1)[-1]
    candidates = [_iteration(task, index), _iteration(short, index)]
    if index is not None:
        candidates.append(f"[{index}]")
    for label in candidates:
        if len(label) * CHAR <= room:
            return label
    return ""


# -- SVG snippets --

_DEFS = (
    "<defs>"
    '<pattern id="jw-poll" patternUnits="userSpaceOnUse" width="6" height="6" '
    'patternTransform="rotate(45)">'
    '<rect width="6" height="6" fill="#F3F4F6"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#9CA3AF" stroke-width="2.2"/>'
    "</pattern>"
    '<pattern id="jw-down" patternUnits="userSpaceOnUse" width="8" height="8" '
    'patternTransform="rotate(-45)">'
    '<rect width="8" height="8" fill="#FEF2F2"/>'
    '<line x1="0" y1="0" x2="0" y2="8" stroke="#FCA5A5" stroke-width="1.5"/>'
    "</pattern>"
    "</defs>"
)


def _glyph(marker: _Marker, cx: float, cy: float) -> str:
    paint = f'fill="{marker.colour}" stroke="#FFFFFF" stroke-width="1"'
    r = 4.5
    if marker.shape == "circle":
        shape = f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(r)}" {paint}/>'
    elif marker.shape == "ring":
        shape = (
            f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(r - 0.5)}" fill="#FFFFFF" '
            f'stroke="{marker.colour}" stroke-width="2"/>'
        )
    elif marker.shape == "square":
        shape = (
            f'<rect x="{_n(cx - r + 0.5)}" y="{_n(cy - r + 0.5)}" '
            f'width="{_n(2 * r - 1)}" height="{_n(2 * r - 1)}" {paint}/>'
        )
    else:
        points = {
            "triangle": [(cx - r, cy - r), (cx + r, cy - r), (cx, cy + r)],
            "up": [(cx - r, cy + r), (cx + r, cy + r), (cx, cy - r)],
            "diamond": [(cx, cy - r - 1), (cx + r, cy), (cx, cy + r + 1), (cx - r, cy)],
        }[marker.shape]
        path = " ".join(f"{_n(px)},{_n(py)}" for px, py in points)
        shape = f'<polygon points="{path}" {paint}/>'
    return shape


def _rect(
    x: float,
    y: float,
    width: float,
    height: float,
    fill: str,
    *,
    stroke: str | None = None,
    stroke_width: float = 1.0,
) -> str:
    line = f' stroke="{stroke}" stroke-width="{_n(stroke_width)}"' if stroke else ""
    return (
        f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(height)}" '
        f'fill="{fill}"{line}/>'
    )


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: int = 11,
    fill: str = TEXT,
    anchor: str = "start",
    weight: str = "normal",
    css_class: str = "",
) -> str:
    attrs = f'x="{_n(x)}" y="{_n(y)}" font-size="{size}"'
    if css_class:
        attrs += f' class="{css_class}"'
    if fill != TEXT:
        attrs += f' fill="{fill}"'
    if anchor != "start":
        attrs += f' text-anchor="{anchor}"'
    if weight != "normal":
        attrs += f' font-weight="{weight}"'
    return f"<text {attrs}>{_esc(text)}</text>"


def _group(attributes: dict[str, object], *children: str) -> str:
    """``<g ...>children</g>``; ``class`` and ``data-*`` let tests and
    scripts find what a bar or marker stands for."""
    attrs = "".join(f' {k}="{_esc(str(v))}"' for k, v in attributes.items())
    return f"<g{attrs}>{''.join(children)}</g>"


def _n(value: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros, never ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
