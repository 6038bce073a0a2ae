"""LISTEN/NOTIFY wake-ups: one connection per database object LISTENs on taskq's
channels and wakes every waiter of the process that cares, so waiters do not poll hard
and many waiters cost one connection.

Waiters take a ``mark()`` of the keys they care about, check the database, and then
``wait(keys, mark, timeout)``: the wait returns early as soon as a notification for
one of those keys arrived after the mark, so a notification sent between the check
and the wait is never lost. When the connection drops, every waiter is woken
(anything may have been missed) and the connection is made again with capped backoff;
waiters keep a slow poll as the safety net meanwhile.

``Mailbox`` is that bookkeeping, with no I/O and no locking; ``Listener`` runs it on a
thread for synchronous waiters, ``taskq.db.alisten.AsyncListener`` on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

import psycopg

from taskq.db.connection import connect
from taskq.sql.catalog import CatalogStatements

log = logging.getLogger("taskq.listen")

ANY = "*"
"""The item that matches every notification of a channel."""

Key = tuple[str, str]
Mark = tuple[int, tuple[int, ...]]

_ALIVE_EVERY = 1.0  # seconds between liveness checks of the LISTEN connection


class Mailbox:
    """Counts notifications per (channel, item) for the items somebody waits on."""

    def __init__(self) -> None:
        self.counts: Counter[Key] = Counter()
        self.interest: Counter[Key] = Counter()
        self.epoch = 0  # bumped on every (re)connect: anything may have been missed
        self.callbacks: dict[Key, list[Callable[[], None]]] = {}

    def add(self, keys: Iterable[Key]) -> None:
        self.interest.update(keys)

    def remove(self, keys: Iterable[Key]) -> None:
        for k in keys:
            self.interest[k] -= 1
            if self.interest[k] <= 0:
                del self.interest[k]
                self.counts.pop(k, None)

    def mark(self, keys: Iterable[Key]) -> Mark:
        return self.epoch, tuple(self.counts[k] for k in keys)

    def moved(self, keys: tuple[Key, ...], mark: Mark) -> bool:
        return self.epoch != mark[0] or any(
            self.counts[k] != m for k, m in zip(keys, mark[1], strict=True)
        )

    def deliver(self, channel: str, payload: str) -> list[Callable[[], None]]:
        """Count a notification; returns the callbacks to call (outside any lock)."""
        # A payload is one queue name (which may itself hold a comma) or a list of
        # comma-separated task ids: count the whole payload and each part. A waiter
        # woken by a part that is not its own just checks the database again.
        items = {payload, *payload.split(",")} if payload else set()
        items.add(ANY)
        calls: list[Callable[[], None]] = []
        for item in items:
            key = (channel, item)
            if key in self.interest:
                self.counts[key] += 1
            calls += self.callbacks.get(key, ())
        return calls

    def reset(self) -> list[Callable[[], None]]:
        """Anything may have been missed: every waiter and every callback is woken."""
        self.epoch += 1
        return [c for calls in self.callbacks.values() for c in calls]


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Listener:
    """A LISTEN connection on a thread, for synchronous waiters (see the module)."""

    def __init__(
        self,
        url: str,
        channels: Iterable[str],
        catalog: CatalogStatements,
        *,
        name: str = "taskq-listen",
    ) -> None:
        self._url = url
        self._catalog = catalog
        self._name = name  # also the connection's application_name, for operators
        self._channels = list(dict.fromkeys(channels))
        self._cond = threading.Condition()
        self._box = Mailbox()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # ---- waiting -------------------------------------------------------------------

    def interest(self, keys: Iterable[Key]) -> None:
        with self._cond:
            self._box.add(keys)

    def on(self, keys: Iterable[Key], callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the LISTEN thread; keep it short) on every notification
        for ``keys``, and whenever the connection was lost (anything may be missed)."""
        with self._cond:
            for k in keys:
                self._box.callbacks.setdefault(k, []).append(callback)

    def forget(self, keys: Iterable[Key]) -> None:
        with self._cond:
            self._box.remove(keys)

    def mark(self, keys: Iterable[Key]) -> Mark:
        with self._cond:
            return self._box.mark(keys)

    def wait(self, keys: Iterable[Key], mark: Mark, timeout: float) -> bool:
        """Block until a key moved past ``mark`` or ``timeout`` passed; True if woken."""
        keys = tuple(keys)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._box.moved(keys, mark):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # ---- the thread ----------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.cancel_safe(timeout=1.0)
            except Exception:  # closing anyway
                pass
        self._thread.join(timeout=5)

    def _reset(self) -> None:
        with self._cond:
            calls = self._box.reset()
            self._cond.notify_all()
        for call in calls:
            call()

    def _run(self) -> None:
        delay = 0.1
        outage_logged = False
        while not self._stop.is_set():
            try:
                with connect(  # keepalives, and no wait without an end
                    self._url, application_name=self._name, connect_timeout=5
                ) as conn:
                    self._conn = conn
                    for ch in self._channels:
                        conn.execute(self._catalog.listen(ch).text)
                    self._connected.set()
                    self._reset()
                    if outage_logged:
                        log.warning("LISTEN connection re-established")
                        outage_logged = False
                    delay = 0.1
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=_ALIVE_EVERY):
                            with self._cond:
                                calls = self._box.deliver(n.channel, n.payload)
                                self._cond.notify_all()
                            for call in calls:
                                call()
                        # a cheap liveness check, so a dead peer is noticed in seconds
                        conn.execute(self._catalog.ping().text)
            except Exception as e:
                self._connected.clear()
                self._conn = None
                self._reset()
                if self._stop.is_set():
                    break
                if not outage_logged:
                    log.warning("LISTEN connection lost (%s); retrying, polling meanwhile",
                                first_line(e))  # fmt: skip
                    outage_logged = True
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        self._connected.clear()
