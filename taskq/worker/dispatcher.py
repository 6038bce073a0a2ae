"""The dispatcher: the one loop of a worker that talks to the database about work.

Each round (``run_once``) is usually ONE statement (``exchange``): it finishes the
plain tasks whose handlers returned, records the starts of reserved tasks that are
still running (charging their attempts), and reserves as many tasks as the worker has
room for, which it hands to its slots at once. Failures and tasks with follow-ups are
written first through the ``Dequeuer`` (their follow-ups run in the same transaction).

The prefetch (``--prefetch``; off by default: then a round claims only what the free
slots start at once, and charges each attempt as it claims it, so even a handler that
kills its worker within its first moment counts, and a handler never runs uncharged). A worker reserves, beyond its free slots, only as many tasks as its
slots are expected to start within ``PREFETCH_HORIZON`` at the recent handler
duration: many for short tasks (one round trip for up to ``MAX_CLAIM``), none for long
ones. A reserved task is charged no attempt and has no ``started_at`` until a slot
really starts it; one no slot starts within ``RESERVE_LIMIT`` goes back to waiting
uncharged at once, for free slots elsewhere; and if the worker dies, the rescue gives
reserved tasks back uncharged. So a prefetched task never waits long behind another,
and never costs an attempt it did not make.

Between rounds it sleeps until an outcome is decided (then a moment more, while
handlers of the same round are still finishing, so one round trip writes them
together), or — while it has room and the last reservation left the queue empty —
until a NOTIFY says work arrived in its queues (the LISTEN connection calls back), or
the poll interval passes (the safety net).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from taskq.actions.outcomes import Outcome, has_followups
from taskq.core.encode import encode_json
from taskq.core.errors import TaskqError, WriteRefused
from taskq.core.types import Task
from taskq.db import Database
from taskq.dequeuer import Dequeuer
from taskq.services.base import Service
from taskq.sql.tasks import Finishing, Starting
from taskq.worker.ledger import Held, Ledger
from taskq.worker.slots import fields

if TYPE_CHECKING:
    from taskq.ops.metrics import Metrics

log = logging.getLogger("taskq.worker")
events = logging.getLogger("taskq.events")

MAX_CLAIM = 100
"""Most tasks reserved (free slots plus prefetch) by one round."""

PREFETCH_HORIZON = 0.05
"""Seconds within which prefetched tasks are expected to start."""

RESERVE_LIMIT = 0.5
"""A reserved task no slot started within this many seconds goes back to waiting."""

GATHER = 0.002
"""Seconds a round waits for handlers of the same batch still finishing, so one round
trip writes their outcomes together."""

START_RECORD_AFTER = 0.05
"""A handler running this long has its start recorded by the next round (charging its
attempt) rather than waiting for its outcome: a crash after that counts."""

GATHER_COUNT = 25
"""...or until this many outcomes are waiting (the rest of the batch keeps running)."""

AUTOSCALE_IDLE = 30.0
"""With --concurrency MIN:MAX, slots halve after this many seconds without work."""


@dataclass(frozen=True, slots=True)
class Round:
    """What one ``run_once`` did."""

    written: int
    claimed: int
    released: int = 0


class Dispatcher(Service):
    name = "dispatcher"

    def __init__(
        self,
        db: Database,
        dequeuer: Dequeuer,
        ledger: Ledger,
        dispatch: Callable[[Task], None],
        *,
        queues: tuple[str, ...],
        poll_interval: float,
        stop_claiming: threading.Event,
        min_slots: int | None = None,
        prefetch: bool = True,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.stmts = db.settings.stmts
        self.dequeuer = dequeuer
        self.ledger = ledger
        self.dispatch = dispatch
        self.queues = queues
        self.interval = poll_interval
        self.stop_claiming = stop_claiming
        self.max_slots = ledger.slots
        self.min_slots = min_slots
        self.prefetching = prefetch
        self.metrics = metrics
        if min_slots is not None:
            ledger.slots = min_slots
        self.avg_duration = 0.1  # seconds, moving average of handler run time
        self._maybe_work = True  # claim at once; after an empty claim, wait for a sign
        self._last_poll = time.monotonic()
        self._idle_since = time.monotonic()

    # ---- the service ---------------------------------------------------------------

    def woken(self) -> None:
        """Work may have arrived (a NOTIFY for our queues, or LISTEN reconnected)."""
        self._maybe_work = True
        self.ledger.poke()

    def ran(self, seconds: float) -> None:
        """A handler ran this long (the prefetch follows it)."""
        self.avg_duration += (seconds - self.avg_duration) * 0.05

    def prefetch(self) -> int:
        """Tasks to reserve beyond the free slots (see the module)."""
        if not self.prefetching:
            return 0
        slots = self.ledger.slots
        # handlers running now count as evidence too: while one has run longer than the
        # average says, the tasks are not short, and reserving more would hoard them
        # from other workers' free slots
        expected = max(self.avg_duration, self.ledger.longest_running(), 1e-4)
        fits = int(slots * PREFETCH_HORIZON / expected)
        return max(0, min(fits, MAX_CLAIM - slots))

    def run_once(self, now: object = None) -> Round:
        stale = self.ledger.stale_claims(RESERVE_LIMIT)
        if stale:
            self._give_back(stale)
        batch = self.ledger.take_decided()
        starts = self.ledger.unrecorded_starts(START_RECORD_AFTER)
        room = 0
        if not self.stop_claiming.is_set() and self._maybe_work:
            room = min(MAX_CLAIM, self.ledger.room(self.prefetch()))
            if not self.prefetching:  # claim and charge only what the free slots start
                room = min(room, self.ledger.free_slots())
        if not batch and not starts and not room:
            return Round(0, 0, len(stale))
        try:
            claimed = self._exchange(batch, starts, room)
        except Exception:
            self.ledger.undo_take(batch)  # written again next round
            raise
        self.ledger.written(batch)
        self._log_written(batch)
        if room:
            self._autoscale(len(claimed), room)
            self._maybe_work = len(claimed) >= room
            self._last_poll = time.monotonic()
        for task in claimed:
            self.dispatch(task)
        return Round(len(batch), len(claimed), len(stale))

    def next_delay(self) -> float:
        return 0.0

    def wait(self, delay: float, stop: threading.Event) -> None:
        """Until an outcome is decided (and its batch has finished, or GATHER passed),
        or there is room and work may be there; at most a short slice."""
        ledger = self.ledger

        def ready() -> bool:
            if stop.is_set():
                return True
            if ledger.has_decided():
                return True
            if self.stop_claiming.is_set():
                return False
            if ledger.unrecorded_starts(START_RECORD_AFTER):
                return True
            if time.monotonic() - self._last_poll >= self.interval:
                self._maybe_work = True  # the safety net: look anyway
            return self._maybe_work and ledger.free_slots() > 0

        if ledger.wait(ready, START_RECORD_AFTER) and ledger.has_decided() and not stop.is_set():
            # more of this batch is about to finish: gather a few outcomes per round trip,
            # while the rest of the batch keeps the slots busy
            ledger.wait(lambda: ledger.decided_count() >= GATHER_COUNT or ledger.idle(), GATHER)

    # ---- one round -----------------------------------------------------------------

    def _exchange(self, batch: list[Held], starts: list[Held], room: int) -> list[Task]:
        plain = [h for h in batch if h.ok and not has_followups([h.outcome])]  # type: ignore[list-item]
        rest = [h for h in batch if h not in plain]
        errors: dict[str, TaskqError] = {}
        if rest:
            now = time.monotonic()
            errors |= self.dequeuer.finish_many([_charged(h, now) for h in rest if h.ok])
            errors |= self.dequeuer.fail_many([_charged(h, now) for h in rest if not h.ok])
        claimed: list[Task] = []
        if plain or starts or room:
            now = time.monotonic()
            ex = self.db.query(
                self.stmts.tasks.exchange(
                    _finishing(plain, now),
                    _starting(starts, now),
                    self.queues,
                    room,
                    self.dequeuer.worker_id,
                    charge=not self.prefetching,
                )  # fmt: skip
            )
            claimed = ex.claimed
            self.ledger.recorded(ex.started)
            missing = [h for h in plain if h.task.id not in ex.done]
            if missing:  # lost claims, cancellations: the ordinary path says which
                errors |= self.dequeuer.finish_many([_charged(h, now) for h in missing])
            if self.metrics is not None:
                self.metrics.observe_ended([_ended(h) for h in plain if h.task.id in ex.done])
        for h in batch:
            if (err := errors.get(h.task.id)) is not None:
                h.extra["refused"] = err
        return claimed

    def _give_back(self, held: list[Held]) -> None:
        try:
            self.dequeuer.release([h.task for h in held])
        except Exception as e:  # the rescue gives them back (uncharged) if this fails
            log.warning("could not give back %d reserved task(s): %s", len(held), e)

    def _log_written(self, batch: list[Held]) -> None:
        if not events.isEnabledFor(logging.INFO) and not any(h.extra for h in batch):
            return
        for h in batch:
            err = h.extra.get("refused")
            f = fields(h.task)
            if err is not None:
                level = logging.ERROR if isinstance(err, WriteRefused) else logging.INFO
                events.log(level, "task outcome refused: %s", err, extra=f)
                continue
            if h.ok:
                events.info("task finished", extra=f | {"status": "finished",
                                                         "duration": _took(h)})  # fmt: skip
                continue
            o = h.outcome
            assert o is not None
            retry = not o.final and h.task.attempts < h.task.max_attempts
            f |= {"status": "waiting" if retry else "failed", "error": str(o.error)[:200],
                  "duration": _took(h)}  # fmt: skip
            events.info("task failed; will retry" if retry else "task failed", extra=f)

    def _autoscale(self, claimed: int, asked: int) -> None:
        """With MIN:MAX slots: grow toward MAX while claims come back full; halve
        toward MIN after AUTOSCALE_IDLE seconds without work."""
        if self.min_slots is None:
            return
        now = time.monotonic()
        slots = self.ledger.slots
        if claimed and claimed >= asked:
            self.ledger.slots = min(self.max_slots, max(slots * 2, slots + 1))
        if claimed:
            self._idle_since = now
        elif now - self._idle_since > AUTOSCALE_IDLE and slots > self.min_slots:
            self.ledger.slots = max(self.min_slots, slots // 2)
            self._idle_since = now


def _finishing(plain: list[Held], now: float) -> Finishing:
    ids: list[str] = []
    leases: list[str | None] = []
    progress: list[str | None] = []
    results: list[str | None] = []
    agos: list[float | None] = []
    for h in plain:
        o = h.outcome
        assert o is not None
        ids.append(h.task.id)
        leases.append(h.task.lease)
        progress.append(None if o.progress is None else encode_json(o.progress, "progress"))
        results.append(encode_json(o.result, f"result of task {h.task.id}"))
        agos.append(None if h.recorded or h.started is None else now - h.started)
    return Finishing(ids, leases, progress, results, agos)


def _charged(h: Held, now: float) -> Outcome:
    """The outcome to write, with how long ago the task started when the database does
    not know its start yet (the write charges its attempt)."""
    assert h.outcome is not None
    if h.recorded or h.started is None:
        return h.outcome
    return replace(h.outcome, ago=now - h.started)


def _starting(starts: list[Held], now: float) -> Starting:
    return Starting(
        [h.task.id for h in starts],
        [h.task.lease for h in starts],
        [now - (h.started or now) for h in starts],
    )


def _took(h: Held) -> float | None:
    return None if h.started is None else round(time.monotonic() - h.started, 4)


def _ended(h: Held) -> dict[str, object]:
    took = _took(h) or 0.0
    ended = dt.datetime.now(dt.UTC)
    return {"queue": h.task.queue, "type": h.task.type, "status": "finished",
            "started_at": ended - dt.timedelta(seconds=took), "ended_at": ended}  # fmt: skip
