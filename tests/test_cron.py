"""taskq.core.cron: checking expressions and time zones, and fire times across DST changes.

The fire times are compared with an oracle that walks the clock minute by minute (or
second by second) and states the policy of taskq/cron.py directly:
- an interval schedule (hour field "*") fires at every instant whose wall-clock
  reading matches;
- a wall-clock schedule fires at an instant when a matching wall-clock time is reached
  for the first time at that instant (including times the clock jumped over).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from taskq import InvalidSchedule
from taskq.core.cron import fire_times, next_fire, parse

UTC = dt.UTC
ZONES = ("America/New_York", "Europe/Berlin", "Europe/Dublin", "Australia/Lord_Howe")


# ---- the oracle --------------------------------------------------------------------


def _field(values: list[object]) -> set[int] | None:
    return None if values == ["*"] else {int(v) for v in values}  # type: ignore[call-overload]


class Matcher:
    """Whether a naive wall-clock time matches an expression (Vixie day rule)."""

    def __init__(self, expr: str) -> None:
        fields = croniter.expand(expr)[0]
        self.minute, self.hour, self.dom, self.month, self.dow = map(_field, fields[:5])
        self.second = _field(fields[5]) if len(fields) == 6 else {0}
        if self.dow is not None:
            self.dow = {d % 7 for d in self.dow}
        self.every_hour = self.hour is None

    def __call__(self, w: dt.datetime) -> bool:
        def ok(values: set[int] | None, v: int) -> bool:
            return values is None or v in values

        if not (ok(self.second, w.second) and ok(self.minute, w.minute)):
            return False
        if not (ok(self.hour, w.hour) and ok(self.month, w.month)):
            return False
        dom_ok, dow_ok = ok(self.dom, w.day), ok(self.dow, (w.weekday() + 1) % 7)
        if self.dom is not None and self.dow is not None:
            return dom_ok or dow_ok
        return dom_ok and dow_ok


def clock(zone: ZoneInfo, start: dt.datetime, end: dt.datetime, step: dt.timedelta):
    """(instant, wall-clock reading) for every step in [start, end]."""
    t = start
    out = []
    while t <= end:
        out.append((t, t.astimezone(zone).replace(tzinfo=None)))
        t += step
    return out


def oracle(expr: str, readings: list[tuple[dt.datetime, dt.datetime]], step: dt.timedelta):
    match = Matcher(expr)
    fires = []
    reached = readings[0][1] - step  # everything before the window counts as reached
    for t, wall in readings:
        if match.every_hour:
            fire = match(wall)
        else:
            fire = False
            w = reached + step
            while w <= wall:  # the times reached for the first time at t
                fire = fire or match(w)
                w += step
            reached = max(reached, wall)
        if fire:
            fires.append(t)
    return fires


def transitions(zone: ZoneInfo, year: int) -> list[dt.datetime]:
    """The instants in ``year`` at which the zone's UTC offset changes (to the hour)."""
    out = []
    t = dt.datetime(year, 1, 1, tzinfo=UTC)
    prev = t.astimezone(zone).utcoffset()
    while t.year == year:
        t += dt.timedelta(hours=1)
        off = t.astimezone(zone).utcoffset()
        if off != prev:
            out.append(t)
            prev = off
    return out


EXPRESSIONS = (
    "30 2 * * *",  # daily 02:30: skipped in spring (NY, Berlin, Dublin), repeated in Berlin
    "30 1 * * *",  # daily 01:30: repeated in NY, Dublin and Lord Howe
    "15 2 * * *",  # skipped by Lord Howe's 30-minute jump
    "0 2 * * *",
    "59 1 * * *",
    "0 3 * * *",
    "*/15 * * * *",
    "0 * * * *",
    "45 * * * *",
    "* 2 * * *",
    "*/20 1-3 * * *",
    "30 2 * * 0",  # Sundays only: the European and American changes fall on Sundays
    "0 0 * * *",
)


@pytest.fixture(scope="module")
def windows() -> list[tuple[str, ZoneInfo, list[tuple[dt.datetime, dt.datetime]]]]:
    """Four days of minute readings around each 2026 transition of each zone."""
    out = []
    minute = dt.timedelta(minutes=1)
    for name in ZONES:
        zone = ZoneInfo(name)
        found = transitions(zone, 2026)
        assert len(found) == 2, (name, found)
        for t in found:
            readings = clock(zone, t - dt.timedelta(days=2), t + dt.timedelta(days=2), minute)
            out.append((name, zone, readings))
    return out


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_fire_times_match_the_minute_oracle(expr: str, windows) -> None:
    minute = dt.timedelta(minutes=1)
    for name, _zone, readings in windows:
        start, end = readings[0][0], readings[-1][0]
        got = fire_times(parse(expr, name), start - minute, end)
        want = oracle(expr, readings, minute)
        assert got == want, (expr, name, sorted(set(got) ^ set(want))[:6])


@pytest.mark.parametrize("expr", ["*/20 * * * * *", "* 2 * * * */15", "30 1 * * * 10"])
@pytest.mark.parametrize("name", ZONES)
def test_six_field_fire_times_match_the_second_oracle(expr: str, name: str) -> None:
    zone = ZoneInfo(name)
    second = dt.timedelta(seconds=1)
    for t in transitions(zone, 2026):
        readings = clock(zone, t - dt.timedelta(minutes=75), t + dt.timedelta(minutes=75), second)
        start, end = readings[0][0], readings[-1][0]
        got = fire_times(parse(expr, name), start - second, end)
        assert got == oracle(expr, readings, second), (expr, name, t)


def _local_days(expr: str, name: str, day: dt.date) -> list[str]:
    """The local times at which ``expr`` fires on ``day`` in zone ``name``."""
    zone = ZoneInfo(name)
    start = dt.datetime.combine(day, dt.time(), zone)
    fires = fire_times(
        parse(expr, name), start - dt.timedelta(seconds=1), start + dt.timedelta(days=1)
    )
    local = [f.astimezone(zone) for f in fires]
    return [x.strftime("%H:%M%z") for x in local if x.date() == day]


@pytest.mark.parametrize(
    ("name", "spring", "fall"),
    [
        ("Europe/Berlin", dt.date(2026, 3, 29), dt.date(2026, 10, 25)),
        ("America/New_York", dt.date(2026, 3, 8), dt.date(2026, 11, 1)),
        ("Europe/Dublin", dt.date(2026, 3, 29), dt.date(2026, 10, 25)),
        ("Australia/Lord_Howe", dt.date(2026, 10, 4), dt.date(2026, 4, 5)),
    ],
)
def test_daily_job_runs_once_on_both_change_days(name: str, spring: dt.date, fall: dt.date) -> None:
    for expr in ("30 2 * * *", "30 1 * * *", "0 2 * * *", "15 2 * * *"):
        assert len(_local_days(expr, name, spring)) == 1, (expr, name)
        assert len(_local_days(expr, name, fall)) == 1, (expr, name)


def test_the_dst_examples_spelled_out() -> None:
    # Berlin, spring: 02:00 -> 03:00, so 02:30 runs at the jump; fall: first 02:30 only.
    assert _local_days("30 2 * * *", "Europe/Berlin", dt.date(2026, 3, 29)) == ["03:00+0200"]
    assert _local_days("30 2 * * *", "Europe/Berlin", dt.date(2026, 10, 25)) == ["02:30+0200"]
    # New York repeats 01:00-01:59: the daily 01:30 runs on the first pass (EDT) only.
    assert _local_days("30 1 * * *", "America/New_York", dt.date(2026, 11, 1)) == ["01:30-0400"]
    # Lord Howe jumps 02:00 -> 02:30: a 02:15 job runs at 02:30 (+11).
    assert _local_days("15 2 * * *", "Australia/Lord_Howe", dt.date(2026, 10, 4)) == ["02:30+1100"]
    # An hourly job follows elapsed time: both 01:00s in Dublin's repeated hour, no 01:00
    # on the spring day (the clock jumps from 00:59 to 02:00).
    assert _local_days("0 1 * * *", "Europe/Dublin", dt.date(2026, 10, 25)) == ["01:00+0100"]
    hourly = _local_days("0 * * * *", "Europe/Dublin", dt.date(2026, 10, 25))
    assert hourly[:4] == ["00:00+0100", "01:00+0100", "01:00+0000", "02:00+0000"]
    assert len(hourly) == 25
    assert len(_local_days("0 * * * *", "Europe/Dublin", dt.date(2026, 3, 29))) == 23


def test_next_fire_from_inside_the_repeated_hour() -> None:
    zone = ZoneInfo("America/New_York")
    spec = parse("*/15 * * * *", "America/New_York")
    first_pass = dt.datetime(2026, 11, 1, 1, 50, tzinfo=zone)  # fold=0: EDT
    second_pass = dt.datetime(2026, 11, 1, 1, 50, fold=1, tzinfo=zone)  # EST
    assert next_fire(spec, first_pass).astimezone(zone).strftime("%H:%M%z") == "01:00-0500"
    assert next_fire(spec, second_pass).astimezone(zone).strftime("%H:%M%z") == "02:00-0500"
    daily = parse("30 1 * * *", "America/New_York")
    inside = dt.datetime(2026, 11, 1, 1, 20, fold=1, tzinfo=zone)
    assert next_fire(daily, inside) == dt.datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


def test_seconds_field_and_aliases() -> None:
    t = dt.datetime(2026, 1, 1, 12, 0, 5, 250000, tzinfo=UTC)
    assert next_fire(parse("* * * * * */10"), t) == t.replace(second=10, microsecond=0)
    assert next_fire(parse("* * * * * *"), t) == t.replace(second=6, microsecond=0)
    assert next_fire(parse("* * * * *"), t) == t.replace(minute=1, second=0, microsecond=0)
    assert parse("* * * * * *").has_seconds and not parse("* * * * *").has_seconds
    assert next_fire(parse("@daily"), t) == dt.datetime(2026, 1, 2, tzinfo=UTC)
    assert parse("  */5   * * * * ").expression == "*/5 * * * *"
    berlin = parse("0 9 * * MON-FRI", "Europe/Berlin")
    assert next_fire(berlin, t) == dt.datetime(2026, 1, 2, 8, tzinfo=UTC)  # a Friday, CET


def test_next_fire_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire(parse("* * * * *"), dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("expr", "quoted"),
    [
        ("61 * * * *", "minute field '61'"),
        ("* 24 * * *", "hour field '24'"),
        ("* * 32 * *", "day-of-month field '32'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * * 8", "day-of-week field '8'"),
        ("* * * * * 60", "second field '60'"),
        ("*/0 * * * *", "minute field '*/0'"),
        ("a b c d e", "minute field 'a'"),
        ("1-70 * * * *", "minute field '1-70'"),
        ("* * * *", "'* * * *' has 4 field(s)"),
        ("* * * * * * *", "'* * * * * * *' has 7 field(s)"),
        ("@reboot", "'@reboot'"),
        ("0 0 30 2 *", "'0 0 30 2 *' never fires"),
        ("", "blank"),
        ("   ", "blank"),
        (None, "must be a string"),
    ],
)
def test_invalid_expressions_quote_the_bad_part(expr: object, quoted: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse(expr)
    assert quoted in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/", None, 3])
def test_invalid_time_zones_are_quoted(name: object) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse("* * * * *", name)
    assert repr(name) in str(info.value)
