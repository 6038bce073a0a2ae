"""Schedulers under fire: three ``taskq scheduler`` processes killed (SIGKILL) and
restarted at random on an every-second schedule; downtime longer than the misfire
grace; tickers whose clocks disagree; and DST days in four zones, through the
database, checked against the minute-by-minute oracle of tests/test_cron.py."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from typing import Any
from zoneinfo import ZoneInfo

from chaoslib import Cluster, Proc, Spawn, wait_started
from helpers import wait_for
from psycopg import sql
from test_cron import ZONES, clock, oracle, transitions

import taskq
from taskq.db import Database
from taskq.services.ticker import CronTicker

SECOND = dt.timedelta(seconds=1)
MINUTE = dt.timedelta(minutes=1)


def runs(cluster: Cluster, schema: str, queue: str) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """(type, run_at, created_at) of the queue's tasks, by run_at."""
    rows = cluster.query(
        sql.SQL("SELECT type, run_at, created_at FROM {} WHERE queue = %s ORDER BY run_at").format(
            sql.Identifier(schema, "tasks")
        ),
        (queue,),
    )
    return [(str(t), r, c) for t, r, c in rows]


def gaps(ticks: list[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(a, b) for a, b in zip(ticks, ticks[1:], strict=False) if b - a != SECOND]


def db_now(cluster: Cluster) -> dt.datetime:
    [(now,)] = cluster.query("SELECT now()")
    assert isinstance(now, dt.datetime)
    return now


def test_three_schedulers_killed_and_restarted_at_random(
    cluster: Cluster, schema: str, spawn: Spawn
) -> None:
    with taskq.Scheduler(cluster.url, schema=schema) as s:
        s.schedule(taskq.TaskScheduleRequest("every-second", "noop", "* * * * * *"))
    schedulers = [spawn("scheduler") for _ in range(3)]
    rng = random.Random(3)
    kills = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:  # one at a time: two always live
        time.sleep(rng.uniform(0.2, 1.2))
        i = rng.randrange(3)
        schedulers[i].kill9()
        kills += 1
        schedulers[i] = spawn("scheduler")
    # All three down for less than the misfire grace (10 s): the late ticks still fire.
    for p in schedulers:
        p.kill9()
    time.sleep(3)
    schedulers = [spawn("scheduler") for _ in range(3)]
    time.sleep(3)
    for p in schedulers:
        wait_started(p)  # a SIGTERM before start-up is a plain kill
        assert p.stop() == 0, p.log()
    ticks = [r for _, r, _ in runs(cluster, schema, "every-second")]
    assert len(ticks) >= 10
    assert len(ticks) == len(set(ticks)), "a tick fired twice"
    assert gaps(ticks) == [], f"ticks missed after {kills} kills"


def test_downtime_longer_than_the_misfire_grace_fires_one_catch_up(
    cluster: Cluster, schema: str, spawn: Spawn
) -> None:
    with taskq.Scheduler(cluster.url, schema=schema) as s:
        s.schedule(taskq.TaskScheduleRequest("catch-up", "noop", "* * * * * *"))
    first: Proc = spawn("scheduler", "--misfire-grace", "2s")
    wait_for(lambda: len(runs(cluster, schema, "catch-up")) >= 3, timeout=20)
    first.kill9()
    down_from = db_now(cluster)
    time.sleep(6)
    back_at = db_now(cluster)
    second = spawn("scheduler", "--misfire-grace", "2s")
    wait_for(
        lambda: any(c > back_at and r > back_at for _, r, c in runs(cluster, schema, "catch-up")),
        timeout=20, what="the restarted scheduler to fire",
    )  # fmt: skip
    time.sleep(1.5)
    wait_started(second)
    assert second.stop() == 0, second.log()
    rows = runs(cluster, schema, "catch-up")
    before = [r for _, r, c in rows if c <= down_from]
    after = [(r, c) for _, r, c in rows if c > back_at]
    assert gaps(before) == []
    # One catch-up task for the whole outage, due at the first missed tick ...
    catch_up = [r for r, c in after if r <= back_at]
    assert catch_up == [before[-1] + SECOND], (before[-3:], after[:3])
    # ... then every tick after the restart, none of the missed ones.
    regular = [r for r, c in after if r > back_at]
    assert regular and gaps(regular) == []
    assert regular[0] - catch_up[0] > 3 * SECOND
    assert len(rows) == len(before) + len(after)


def test_tickers_with_skewed_clocks_fire_each_tick_at_most_once(
    cluster: Cluster, schema: str
) -> None:
    """Ticks are claimed by the database, not by a host's clock: tickers whose clocks
    are up to 4 s apart (``run_once(now=...)``) still make one task per tick."""
    with taskq.Scheduler(cluster.url, schema=schema) as s:
        made = [
            s.schedule(taskq.TaskScheduleRequest("skew", f"t{i}", "* * * * * *")) for i in range(10)
        ]
    start = min(m.next_run_at for m in made)
    skews = [-4.0, -1.5, 0.0, 2.5, 4.0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(skews))

    def run(skew: float) -> None:
        db = Database(cluster.url, schema)
        ticker = CronTicker(db, listen=False)
        try:
            for step in range(30):
                barrier.wait()
                ticker.run_once(now=start + step * SECOND + dt.timedelta(seconds=skew))
        except BaseException as e:
            errors.append(e)
        finally:
            ticker.close()
            db.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in skews]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    rows = runs(cluster, schema, "skew")
    for m in made:
        ticks = sorted(r for ty, r, _ in rows if ty == m.type)
        assert len(ticks) == len(set(ticks)), "a tick fired twice"
        assert gaps(ticks) == []
        assert ticks[0] == m.next_run_at
        # the most advanced clock decides how far the schedule got
        assert ticks[-1] == start + 29 * SECOND + dt.timedelta(seconds=max(skews))


DST_EXPRESSIONS = ("30 2 * * *", "30 1 * * *", "15 2 * * *", "*/15 * * * *", "0 * * * *")


def test_dst_days_through_the_database_with_racing_tickers_match_the_oracle(
    cluster: Cluster, schema: str
) -> None:
    """Around both 2026 transitions of each zone, three tickers race for every round
    (each with its own small delay, inside the misfire grace); the tasks made must be
    exactly the oracle's fire times, expression by expression."""
    rng = random.Random(5)
    dbs = [Database(cluster.url, schema) for _ in range(3)]
    tickers = [CronTicker(db, listen=False) for db in dbs]
    schedules = sql.Identifier(schema, "schedules")
    try:
        with taskq.Scheduler(cluster.url, schema=schema) as sched:
            for name in ZONES:
                zone = ZoneInfo(name)
                for n, change in enumerate(transitions(zone, 2026)):
                    queue = f"dst-{name}-{n}"
                    start = (change - dt.timedelta(hours=10)).replace(minute=7)
                    end = change + dt.timedelta(hours=10, minutes=7)
                    for i, expr in enumerate(DST_EXPRESSIONS):
                        sched.schedule(
                            taskq.TaskScheduleRequest(queue, f"e{i}", expr, timezone=name),
                            now=start,
                        )
                    _drive(cluster, schema, tickers, rng, end)
                    cluster.query(sql.SQL("DELETE FROM {}").format(schedules))
                    readings = clock(zone, start, end, MINUTE)
                    got = runs(cluster, schema, queue)
                    for i, expr in enumerate(DST_EXPRESSIONS):
                        fired = [r for ty, r, _ in got if ty == f"e{i}"]
                        want = oracle(expr, readings, MINUTE)
                        assert fired == want, (name, expr, sorted(set(fired) ^ set(want))[:4])
    finally:
        for t in tickers:
            t.close()
        for db in dbs:
            db.close()


def _drive(
    cluster: Cluster, schema: str, tickers: list[CronTicker], rng: random.Random, end: Any
) -> None:
    """Step the tickers' clock from due tick to due tick until past ``end``."""
    query = sql.SQL("SELECT min(next_run_at) FROM {}").format(sql.Identifier(schema, "schedules"))
    errors: list[BaseException] = []
    while True:
        [(due,)] = cluster.query(query)
        if due is None or due > end:
            return
        barrier = threading.Barrier(len(tickers))

        def run(t: CronTicker, now: dt.datetime, barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                t.run_once(now=now)
            except BaseException as e:
                errors.append(e)

        threads = [
            threading.Thread(target=run, args=(t, due + dt.timedelta(seconds=rng.uniform(0, 3))))
            for t in tickers
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors
