"""Cron expressions in a time zone: checking them, and when they fire next. Pure functions.

croniter reads the expression (5 fields, or 6 whose last is seconds, or an alias such as
``@daily``) and is only ever asked about naive wall-clock times, which it handles as
plain calendar arithmetic. Turning wall-clock times into instants is done here, because
croniter's own time-zone handling is wrong at DST changes: given an aware start it fires
a daily 01:30 job twice on America/New_York's fall-back day (2026-11-01, once at EDT and
once at EST), since it steps through the repeated hour like any other.

DST policy (the same in every zone, including ones that shift by 30 minutes such as
Australia/Lord_Howe, or whose winter time is "negative DST" such as Europe/Dublin):

- A **wall-clock schedule** names particular hours (its hour field is not ``*``, e.g.
  ``30 2 * * *``). Each wall-clock time it matches fires exactly once, at the first
  instant the clock shows that time. A time the clock skips (spring forward) fires at
  the instant of the jump: a daily 02:30 job in Europe/Berlin runs at 03:00 CEST on the
  spring-forward day; several skipped times fire once there. A time the clock shows
  twice (fall back) fires on its first pass only.
- An **interval schedule** matches every hour (hour field ``*``, e.g. ``*/15 * * * *``,
  ``0 * * * *``, ``* * * * * *``). It fires whenever the clock shows a matching time, so
  it follows elapsed time: skipped times do not fire and repeated times fire in both
  passes; an hourly job stays hourly through the change.

The oracle in ``tests/test_cron.py`` states the same policy minute by minute.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from taskq.core.errors import InvalidSchedule

UTC = dt.UTC

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week", "second")
_RANGES = ("0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-7 or SUN-SAT", "0-59")
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")

# A reference instant for "does this expression ever fire at all" (e.g. "0 0 30 2 *").
_PROBE = dt.datetime(2001, 1, 1, tzinfo=UTC)
# Guard against a runaway search; a real search never comes close.
_MAX_STEPS = 200_000


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A checked cron expression and time zone (build with :func:`parse`)."""

    expression: str
    timezone: str
    zone: ZoneInfo = field(repr=False, compare=False)
    has_seconds: bool
    interval: bool
    """True when the hour field matches every hour (see the DST policy above)."""


def check_timezone(name: Any) -> ZoneInfo:
    """The ZoneInfo named ``name``; InvalidSchedule quoting it when there is none."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidSchedule(
            f"time zone {name!r} is not a time zone name (use an IANA name such as "
            "'Europe/Berlin' or 'UTC')"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')"
        ) from None


def _reason(error: Exception) -> str:
    """croniter's complaint without the echoed expression."""
    text = str(error).strip()
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)
    text = re.sub(r"^is not acceptable,?\s*", "", text)
    return text or "not acceptable"


def _bad_field(fields: list[str]) -> str | None:
    """Which field croniter rejects, and why, trying each on its own."""
    for i, text in enumerate(fields):
        probe = ["*"] * len(fields)
        probe[i] = text
        try:
            croniter(" ".join(probe), dt.datetime(2001, 1, 1))
        except (CroniterError, ValueError, KeyError, IndexError, TypeError) as e:
            name = FIELDS[i]
            return f"{name} field {text!r} is invalid ({_reason(e)}; allowed {_RANGES[i]})"
    return None


def check_expression(expression: Any) -> str:
    """The expression, whitespace normalised; InvalidSchedule quoting the bad part."""
    if not isinstance(expression, str):
        raise InvalidSchedule(f"cron expression must be a string, got {type(expression).__name__}")
    expr = " ".join(expression.split())
    if not expr:
        raise InvalidSchedule("cron expression cannot be blank")
    if expr.startswith("@"):
        if expr.lower() not in ALIASES:
            raise InvalidSchedule(f"unknown cron alias {expr!r} (known: {', '.join(ALIASES)})")
        return expr.lower()
    fields = expr.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"cron expression {expr!r} has {len(fields)} field(s); expected 5 (minute hour "
            "day-of-month month day-of-week) or 6 (the same, then second)"
        )
    try:
        croniter(expr, dt.datetime(2001, 1, 1))
    except (CroniterError, ValueError, KeyError, IndexError, TypeError) as e:
        where = _bad_field(fields)
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {where or _reason(e)}") from None
    return expr


def parse(expression: Any, timezone: Any = "UTC") -> CronSpec:
    """Check ``expression`` and ``timezone`` before anything is stored.

    Raises InvalidSchedule (a ValueError) quoting the bad part: a field croniter
    rejects, a wrong number of fields, an unknown time zone, or an expression that
    never fires (``0 0 30 2 *``).
    """
    expr = check_expression(expression)
    zone = check_timezone(timezone)
    expanded = croniter.expand(expr)[0]
    hours = expanded[1]
    spec = CronSpec(
        expression=expr,
        timezone=timezone,
        zone=zone,
        has_seconds=len(expanded) == 6,
        interval=hours == ["*"] or set(hours) >= set(range(24)),
    )
    try:
        next_fire(spec, _PROBE)
    except CroniterBadDateError:
        raise InvalidSchedule(f"cron expression {expr!r} never fires") from None
    return spec


# ---- from wall-clock times to instants ---------------------------------------------


def _walls(spec: CronSpec, start: dt.datetime) -> Iterator[dt.datetime]:
    """Matching naive wall-clock times strictly after naive ``start``, ascending."""
    it = croniter(spec.expression, start)
    for _ in range(_MAX_STEPS):
        yield it.get_next(dt.datetime)
    raise RuntimeError(f"cron search for {spec.expression!r} ran away")


def _utc(wall: dt.datetime, offset: dt.timedelta) -> dt.datetime:
    return (wall - offset).replace(tzinfo=UTC)


def _passes(zone: ZoneInfo, wall: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The instants at which the clock shows ``wall``: (first, second).

    (t, None) for an ordinary time, (t1, t2) for a time shown twice (fall back), and
    (None, None) for a time the clock skips (spring forward).
    """
    early = wall.replace(tzinfo=zone, fold=0).utcoffset()
    late = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert early is not None and late is not None
    if early == late:
        return _utc(wall, early), None
    if early > late:  # the clock goes back: fold 0 is the first pass
        return _utc(wall, early), _utc(wall, late)
    return None, None


def _reached(zone: ZoneInfo, wall: dt.datetime) -> dt.datetime:
    """The first instant the clock shows ``wall`` or later (for a skipped time: the jump)."""
    first, _ = _passes(zone, wall)
    if first is not None:
        return first
    before = wall.replace(tzinfo=zone, fold=0).utcoffset()
    after = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert before is not None and after is not None
    # The jump lies in (wall - after, wall - before]; transitions are whole seconds.
    lo = int(_utc(wall, after).timestamp())
    hi = int(_utc(wall, before).timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        shown = dt.datetime.fromtimestamp(mid, zone).replace(tzinfo=None)
        if shown >= wall:
            hi = mid
        else:
            lo = mid
    return dt.datetime.fromtimestamp(hi, UTC)


def next_fire(spec: CronSpec, after: dt.datetime) -> dt.datetime:
    """The first instant strictly after ``after`` (aware) at which ``spec`` fires, in UTC.

    Follows the DST policy in the module docstring. Raises CroniterBadDateError for an
    expression that never fires (``parse`` refuses those).
    """
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("next_fire needs a timezone-aware datetime")
    zone = spec.zone
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if not spec.interval:
        # The first instant each wall time is reached is nondecreasing in the wall time,
        # and every wall time up to the clock's reading at `after` was reached by then.
        for w in _walls(spec, wall):
            t = _reached(zone, w)
            if t > after:
                return t
    best: dt.datetime | None = None
    first, second = _passes(zone, wall)
    if second is not None and local.fold == 0:
        # In the first pass of a repeated hour: matching times already shown in this pass
        # come again in the second, before anything after the repeated hour.
        assert first is not None
        width = second - first  # how far the clock went back
        for w in _walls(spec, wall - width):
            if w > wall:
                break
            _, again = _passes(zone, w)
            if again is not None:
                best = again
                break
    for w in _walls(spec, wall):
        first, second = _passes(zone, w)
        if first is None:
            continue  # skipped by the clock: an interval schedule does not fire then
        if first > after:
            return first if best is None else min(best, first)
        if second is not None and second > after:
            return second if best is None else min(best, second)
    raise AssertionError("unreachable")  # pragma: no cover - _walls raises first


def fire_times(spec: CronSpec, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """Every fire time in (``after``, ``until``], ascending (for tests and previews)."""
    out: list[dt.datetime] = []
    t = next_fire(spec, after)
    while t <= until:
        out.append(t)
        t = next_fire(spec, t)
    return out
