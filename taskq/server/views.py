"""What the dashboard's templates show, computed in Python: progress, throughput
charts (inline SVG, no script needed), and the page context. No I/O."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from taskq.core.types import Progress, Task

NOTICES = {
    "signed-out": "Signed out.",
    "cancelled": "Task cancelled.",
    "retried": "Task back in waiting.",
    "retried-all": "{n} failed task(s) put back in waiting.",
    "not-allowed": "Your token's scope does not allow that.",
    "stale-form": "That form had expired; nothing was changed. Try again.",
    "already-ended": "That task had already ended.",
    "not-retryable": "Only failed or cancelled tasks can be retried.",
}


@dataclass
class ProgressView:
    fraction: float | None
    label: str
    detail: str
    raw: str | None = None

    @property
    def percent(self) -> str:
        return "" if self.fraction is None else f"{self.fraction * 100:.0f}%"


def progress_of(task: Task) -> ProgressView:
    p = Progress.from_json(task.progress)
    if task.status.value == "finished":
        return ProgressView(task.fraction(), "done", "")
    if p is None:
        raw = None if task.progress is None else json.dumps(task.progress, ensure_ascii=False)
        return ProgressView(None, "", "", raw[:200] if raw else None)
    bits = []
    if p.step is not None and p.steps:
        bits.append(f"step {p.step} of {p.steps}")
    if p.status:
        bits.append(p.status)
    return ProgressView(task.fraction(), bits[0] if bits else "", " · ".join(bits[1:]))


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def iso(value: dt.datetime | None) -> str:
    return "" if value is None else value.isoformat()


def time_tag(value: dt.datetime | None, relative: bool = False) -> Markup:
    """A ``<time>`` the page's script shows in the viewer's time zone (UTC without it)."""
    if value is None:
        return Markup('<span class="muted">—</span>')
    utc = value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    kind = "rel" if relative else "abs"
    return Markup('<time datetime="{}" data-kind="{}" title="{}">{}</time>').format(
        value.isoformat(), kind, utc, utc
    )


@dataclass
class Series:
    """Ended tasks per minute, oldest first (index -1 is the last 60 seconds)."""

    finished: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.finished) + sum(self.failed)

    def per_minute(self, last: int = 5) -> float:
        return (sum(self.finished[-last:]) + sum(self.failed[-last:])) / last


def throughput(rows: Iterable[Mapping[str, Any]], minutes: int) -> dict[str, Series]:
    """Series per queue (and ``""`` for all queues) from the throughput statement's rows."""
    out: dict[str, Series] = {}

    def series(q: str) -> Series:
        if q not in out:
            out[q] = Series([0] * minutes, [0] * minutes)
        return out[q]

    series("")
    for r in rows:
        ago = int(r["ago"])
        if not 0 <= ago < minutes or r["status"] == "cancelled":
            continue
        for s in (series(r["queue"]), out[""]):
            bucket = s.finished if r["status"] == "finished" else s.failed
            bucket[minutes - 1 - ago] += int(r["n"])
    return out


def bars(s: Series, width: int = 120, height: int = 28, label: str = "") -> Markup:
    """Stacked bars (finished, then failed on top), one per minute, as inline SVG."""
    n = len(s.finished)
    top = max([f + x for f, x in zip(s.finished, s.failed, strict=True)] + [1])
    slot = width / max(n, 1)
    gap = 1 if slot > 3 else 0
    parts = []
    for i, (f, x) in enumerate(zip(s.finished, s.failed, strict=True)):
        xpos = i * slot
        hf = round(f / top * (height - 1), 1)
        hx = round(x / top * (height - 1), 1)
        tip = f"{n - 1 - i} min ago: {f} finished, {x} failed"
        parts.append(
            f'<g><title>{escape(tip)}</title>'
            f'<rect class="bar-base" x="{xpos:.1f}" y="{height - 1}" width="{slot - gap:.1f}" height="1"/>'
            + (f'<rect class="bar-ok" x="{xpos:.1f}" y="{height - hf:.1f}" width="{slot - gap:.1f}" height="{hf}"/>' if f else "")
            + (f'<rect class="bar-bad" x="{xpos:.1f}" y="{height - hf - hx:.1f}" width="{slot - gap:.1f}" height="{hx}"/>' if x else "")
            + "</g>"
        )  # fmt: skip
    aria = escape(label or f"ended tasks per minute over the last {n} minutes")
    return Markup(
        f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{aria}" preserveAspectRatio="none">{"".join(parts)}</svg>'
    )


def short_id(value: str | None) -> str:
    return "" if not value else str(value).split("-")[0]


def query_string(params: Mapping[str, Any], **changes: Any) -> str:
    from urllib.parse import urlencode

    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "", [])}
    pairs: list[tuple[str, str]] = []
    for k, v in merged.items():
        if isinstance(v, Sequence) and not isinstance(v, str):
            pairs += [(k, str(x)) for x in v]
        else:
            pairs.append((k, str(v)))
    return "?" + urlencode(pairs) if pairs else ""


FILTERS = {
    "progress_of": progress_of,
    "pretty": pretty,
    "iso": iso,
    "time_tag": time_tag,
    "short_id": short_id,
    "bars": bars,
}
