"""The rescue racing ``finish``: many rounds of tasks whose heartbeat was set into
the past, finished by two threads while a third rescues them. Whichever wins, the
loser changes nothing, and a finished task never moves again."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from chaoslib import Cluster
from psycopg import sql

import taskq

ROUNDS = 25
PER_ROUND = 40


def rows(cluster: Cluster, schema: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    with cluster.connect() as conn:
        cur = conn.execute(
            sql.SQL("SELECT * FROM {} WHERE id = ANY(%s::uuid[])").format(
                sql.Identifier(schema, "tasks")
            ),
            (ids,),
        )
        names = [c.name for c in cur.description or ()]
        return {str(r[0]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def race(d: taskq.Dequeuer, claimed: list[taskq.Task], r: int) -> dict[str, str]:
    """Two threads finish ``claimed`` (from both ends) while a third rescues; returns
    "finished" or "lost" (LeaseLost) per task id."""
    outcome: dict[str, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def finisher(part: list[taskq.Task]) -> None:
        start.wait()
        for t in part:
            try:
                d.finish(t, result={"round": r})
                outcome[t.id] = "finished"
            except taskq.LeaseLost:
                outcome[t.id] = "lost"
            except BaseException as e:  # anything else fails the test
                errors.append(e)

    def rescuer() -> None:
        start.wait()
        time.sleep(random.Random(r).uniform(0, 0.03))  # land anywhere in the finishes
        try:
            for _ in range(3):
                d.rescue()
        except BaseException as e:
            errors.append(e)

    half = len(claimed) // 2
    threads = [
        threading.Thread(target=finisher, args=(claimed[:half],)),
        threading.Thread(target=finisher, args=(claimed[half:][::-1],)),
        threading.Thread(target=rescuer),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return outcome


def test_rescue_racing_finish_never_moves_a_finished_task(cluster: Cluster, schema: str) -> None:
    finished: dict[str, dict[str, Any]] = {}  # row snapshots right after each round
    lost_total = 0
    with (
        taskq.Queuer(cluster.url, schema=schema) as q,
        taskq.Dequeuer(cluster.url, schema=schema, pool_size=8) as d,
    ):
        for r in range(ROUNDS):
            queue = f"race-{r}"
            q.enqueue_many(
                [taskq.TaskEnqueueRequest(queue=queue, type="race", max_attempts=5,
                                          heartbeat_timeout=1) for _ in range(PER_ROUND)]
            )  # fmt: skip
            claimed = d.dequeue_many([queue], PER_ROUND)
            assert len(claimed) == PER_ROUND
            cluster.query(
                sql.SQL(
                    "UPDATE {} SET last_heartbeat_at = now() - interval '1 hour'"
                    " WHERE id = ANY(%s::uuid[])"
                ).format(sql.Identifier(schema, "tasks")),
                ([t.id for t in claimed],),
            )
            outcome = race(d, claimed, r)
            assert len(outcome) == PER_ROUND

            now = rows(cluster, schema, [t.id for t in claimed])
            for t in claimed:
                row = now[t.id]
                if outcome[t.id] == "finished":
                    assert row["status"] == "finished" and row["result"] == {"round": r}
                    finished[t.id] = row
                else:  # the rescue won: back to waiting, the finish changed nothing
                    lost_total += 1
                    assert row["status"] == "waiting" and row["result"] is None
                    assert row["lease"] is None and row["attempts"] == 1

            # The losers' stale claims stay refused after the task is claimed again,
            # and the new claim's own finish works.
            again = d.dequeue_many([queue], PER_ROUND)
            assert {t.id for t in again} == {i for i, o in outcome.items() if o == "lost"}
            for old in claimed:
                if outcome[old.id] == "lost":
                    with pytest.raises(taskq.LeaseLost):
                        d.finish(old, result="stale")
                    with pytest.raises(taskq.LeaseLost):
                        d.heartbeat(old)
            for t in again:
                d.finish(t, result={"round": r, "again": True})

            # Finished tasks stay put whatever comes after: more rescues, and every
            # write with their own (now spent) claim.
            for _ in range(2):
                d.rescue()
            for old in claimed:
                if outcome[old.id] == "finished":
                    with pytest.raises(taskq.TaskFinished):
                        d.finish(old, result="again")
                    with pytest.raises(taskq.TaskFinished):
                        d.fail(old, error="late failure")
                    with pytest.raises(taskq.TaskFinished):
                        d.heartbeat(old, {"late": True})

        after = rows(cluster, schema, list(finished))
        assert after == finished, "a finished task moved"
    # Both sides of the race were exercised over the rounds (reported, not required:
    # the interleaving is up to the scheduler).
    print(f"rescue won {lost_total}, finish won {len(finished)} of {ROUNDS * PER_ROUND}")
