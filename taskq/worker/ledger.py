"""What a worker holds: every claimed task's state, in one place, under one lock.

A task is *held* from its claim until its outcome is written (or it is given back).
Its states, and the only transitions between them::

    claimed ──start──▶ running ──handler returns, raises, times out──▶ decided
       │                  │  │                                            │
       │ shutdown         │  └─ cancelled or claim lost ─▶ dropped       │ written
       ▼                  │     (nothing to write)                      ▼
    released ◀── grace over at shutdown                              written
    (back to waiting, no attempt charged)

- ``claimed``: reserved for this worker's slots (the prefetch): in the database it is
  running under this worker's lease, but no attempt is charged and ``started_at`` is
  empty, so if the worker dies the rescue gives it back uncharged; one that no slot
  starts within ``RESERVE_LIMIT`` is given back at once (``stale_claims``).
- ``running``: its handler started (``started`` is the real start: timeouts count from
  it). The start is recorded in the database by the next round trip (``recorded``),
  which charges the attempt, or by the write of its outcome if it ended first. A
  handler still executes in ``running``, and may still execute after a timeout decided
  its outcome (a sync handler cannot be killed): ``executing`` says whether it holds
  its slot.
- ``decided``: its outcome is known and waits to be written; the heartbeater keeps
  heartbeating it, so a slow write (a database outage) never lets the rescue take a
  task whose handler finished.
- ``written``, ``released``, ``dropped``: no longer held.

Every transition goes through a method here; each takes the lock, checks the current
state, and returns whether it happened, so two threads racing (a handler returning as
its timeout fires, a shutdown as a handler starts) agree on one winner. The condition
``changed`` wakes the dispatcher (an outcome to write, a slot free) and the shutdown.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskq.actions.outcomes import Outcome
from taskq.core.types import Task
from taskq.registry import TaskContext


class State(enum.Enum):
    CLAIMED = "claimed"
    RUNNING = "running"
    DECIDED = "decided"
    WRITTEN = "written"
    RELEASED = "released"
    DROPPED = "dropped"


HELD = (State.CLAIMED, State.RUNNING, State.DECIDED)


@dataclass(eq=False)
class Held:
    """One claimed task (its fields change only under the ledger's lock)."""

    task: Task
    ctx: TaskContext
    state: State = State.CLAIMED
    claimed: float = field(default_factory=time.monotonic)
    started: float | None = None  # time.monotonic() when its handler started
    recorded: bool = False  # the database knows it started (its attempt is charged)
    executing: bool = False  # its handler holds a slot
    outcome: Outcome | None = None
    ok: bool = False  # the outcome is a finish
    cancel: Callable[[], None] | None = None  # cancels an async handler
    extra: dict[str, Any] = field(default_factory=dict)


class Ledger:
    """The held tasks of one worker and their transitions (see the module)."""

    def __init__(self, slots: int, on_start: Callable[[Task], None] | None = None) -> None:
        self.slots = slots
        self.on_start = on_start  # called (outside the lock) as each handler starts
        self.changed = threading.Condition(threading.RLock())  # predicates may read it
        self._held: dict[str, Held] = {}
        self._executing = 0
        self._decided: list[Held] = []

    # ---- reading ---------------------------------------------------------------------

    def free_slots(self) -> int:
        """Slots minus tasks claimed or executing: how many could start now."""
        with self.changed:
            return max(0, self.slots - self._executing - self._claimed_count())

    def room(self, prefetch: int) -> int:
        """How many tasks to reserve now: the free slots, plus ``prefetch``."""
        with self.changed:
            return max(0, self.slots + prefetch - self._executing - self._claimed_count())

    def _claimed_count(self) -> int:
        return sum(1 for h in self._held.values() if h.state is State.CLAIMED)

    def unrecorded_starts(self, older_than: float = 0.0) -> list[Held]:
        """Running tasks, started at least ``older_than`` seconds ago, whose start the
        database does not know yet."""
        limit = time.monotonic() - older_than
        with self.changed:
            return [h for h in self._held.values()
                    if h.state is State.RUNNING and not h.recorded
                    and h.started is not None and h.started <= limit]  # fmt: skip

    def recorded(self, ids: frozenset[str]) -> None:
        with self.changed:
            for task_id in ids:
                h = self._held.get(task_id)
                if h is not None:
                    h.recorded = True

    def stale_claims(self, older_than: float) -> list[Held]:
        """claimed → released for reserved tasks no slot started in ``older_than``
        seconds (give them back, uncharged, for free slots elsewhere)."""
        limit = time.monotonic() - older_than
        with self.changed:
            out = [h for h in self._held.values()
                   if h.state is State.CLAIMED and h.claimed < limit]  # fmt: skip
            for h in out:
                h.state = State.RELEASED
                self._held.pop(h.task.id, None)
            return out

    def has_decided(self) -> bool:
        with self.changed:
            return bool(self._decided)

    def decided_count(self) -> int:
        with self.changed:
            return len(self._decided)

    def idle(self) -> bool:
        """No handler executing and no reserved task waiting for a slot."""
        with self.changed:
            return self._executing == 0 and self._claimed_count() == 0

    def held(self) -> list[Held]:
        with self.changed:
            return list(self._held.values())

    def in_state(self, *states: State) -> list[Held]:
        with self.changed:
            return [h for h in self._held.values() if h.state in states]

    def executing(self) -> int:
        with self.changed:
            return self._executing

    def longest_running(self) -> float:
        """Seconds the longest-running executing handler has run so far (0: none)."""
        now = time.monotonic()
        with self.changed:
            starts = [h.started for h in self._held.values() if h.executing and h.started]
        return max((now - t for t in starts), default=0.0)

    def __len__(self) -> int:
        with self.changed:
            return len(self._held)

    # ---- transitions -----------------------------------------------------------------

    def claimed(self, task: Task, ctx: TaskContext, *, charged: bool = False) -> Held:
        h = Held(task, ctx, recorded=charged)
        with self.changed:
            self._held[task.id] = h
        return h

    def start(self, h: Held) -> bool:
        """claimed → running; False when it was released meanwhile (do not run it)."""
        with self.changed:
            if h.state is not State.CLAIMED:
                return False
            h.state = State.RUNNING
            h.started = time.monotonic()
            h.executing = True
            self._executing += 1
        if self.on_start is not None:
            self.on_start(h.task)
        return True

    def returned(self, h: Held) -> None:
        """The handler returned or raised: it no longer holds its slot."""
        with self.changed:
            if h.executing:
                h.executing = False
                self._executing -= 1
                self.changed.notify_all()

    def decide(self, h: Held, outcome: Outcome, ok: bool) -> bool:
        """running → decided (or claimed → decided: a task no handler can run); False
        when another outcome was decided first."""
        with self.changed:
            if h.state not in (State.RUNNING, State.CLAIMED):
                return False
            h.state = State.DECIDED
            h.outcome, h.ok = outcome, ok
            self._decided.append(h)
            self.changed.notify_all()
            return True

    def drop(self, h: Held) -> bool:
        """running → dropped: its outcome must not be written (cancelled, claim lost)."""
        with self.changed:
            if h.state is not State.RUNNING:
                return False
            h.state = State.DROPPED
            self._held.pop(h.task.id, None)
            self.changed.notify_all()
            return True

    def take_decided(self) -> list[Held]:
        """The decided outcomes to write now (they stay held until ``written``)."""
        with self.changed:
            out, self._decided = self._decided, []
            return out

    def undo_take(self, batch: list[Held]) -> None:
        """A write failed: the outcomes go back to be written again."""
        with self.changed:
            self._decided[:0] = [h for h in batch if h.state is State.DECIDED]

    def written(self, batch: list[Held]) -> None:
        """decided → written (also for an outcome the database refused: given up)."""
        with self.changed:
            for h in batch:
                if h.state is State.DECIDED:
                    h.state = State.WRITTEN
                    self._held.pop(h.task.id, None)
            self.changed.notify_all()

    def release_claimed(self) -> list[Held]:
        """claimed → released for every task not started yet (shutdown)."""
        return self._release((State.CLAIMED,))

    def release_running(self) -> list[Held]:
        """running → released for every running task (shutdown, grace over)."""
        return self._release((State.RUNNING,))

    def _release(self, states: tuple[State, ...]) -> list[Held]:
        with self.changed:
            out = [h for h in self._held.values() if h.state in states]
            for h in out:
                h.state = State.RELEASED
                self._held.pop(h.task.id, None)
            self.changed.notify_all()
            return out

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (up to ``timeout``) until ``predicate()``, evaluated under the lock."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def poke(self) -> None:
        """Wake whoever waits on the ledger (new work may be there)."""
        with self.changed:
            self.changed.notify_all()
