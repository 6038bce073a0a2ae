"""LISTEN in a background thread, so waiters wake on NOTIFY instead of polling hard.

One ``Listener`` owns one autocommit connection that LISTENs on taskq's channels.
Waiters take a ``mark()`` of the keys they care about, check the database, and then
``wait(mark, timeout)``: the wait returns early as soon as a notification for one of
those keys arrived after the mark, so a notification sent between the check and the
wait is never lost. When the connection drops, every waiter is woken (anything may
have been missed), and the thread reconnects with capped backoff; waiters keep a
slow poll as the safety net meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable

import psycopg
from psycopg import sql

from taskq.db import connect

log = logging.getLogger("taskq.notify")

ANY = "*"


class Listener:
    """Counts notifications per (channel, item) for the items somebody waits on."""

    def __init__(self, url: str, channels: Iterable[str], *, name: str = "taskq-listen") -> None:
        self._url = url
        self._name = name  # also the connection's application_name, for operators
        self._channels = list(channels)
        self._cond = threading.Condition()
        self._counts: Counter[tuple[str, str]] = Counter()
        self._interest: Counter[tuple[str, str]] = Counter()
        self._epoch = 0  # bumped on every (re)connect: anything may have been missed
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

    def interest(self, keys: Iterable[tuple[str, str]]) -> None:
        with self._cond:
            self._interest.update(keys)

    def forget(self, keys: Iterable[tuple[str, str]]) -> None:
        with self._cond:
            for k in keys:
                self._interest[k] -= 1
                if self._interest[k] <= 0:
                    del self._interest[k]
                    self._counts.pop(k, None)

    def mark(self, keys: Iterable[tuple[str, str]]) -> tuple[int, tuple[int, ...]]:
        with self._cond:
            return self._epoch, tuple(self._counts[k] for k in keys)

    def wait(
        self,
        keys: Iterable[tuple[str, str]],
        mark: tuple[int, tuple[int, ...]],
        timeout: float,
    ) -> bool:
        """Block until a key moved past ``mark`` or ``timeout`` passed; True if woken."""
        keys = tuple(keys)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._epoch != mark[0] or any(
                    self._counts[k] != m for k, m in zip(keys, mark[1], strict=True)
                ):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

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

    def _deliver(self, channel: str, payload: str) -> None:
        # A payload is one queue name (which may itself hold a comma) or a list of
        # comma-separated task ids: count the whole payload and each part. A waiter
        # woken by a part that is not its own just checks the database again.
        items = {payload, *payload.split(",")} if payload else set()
        with self._cond:
            for item in items:
                key = (channel, item)
                if key in self._interest:
                    self._counts[key] += 1
            any_key = (channel, ANY)
            if any_key in self._interest:
                self._counts[any_key] += 1
            self._cond.notify_all()

    def _bump(self) -> None:
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()

    def _run(self) -> None:
        delay = 0.1
        outage_logged = False
        while not self._stop.is_set():
            try:
                with connect(  # keepalives, and no wait without an end
                    self._url, autocommit=True, connect_timeout=5,
                    application_name=self._name,
                ) as conn:  # fmt: skip
                    self._conn = conn
                    for ch in self._channels:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ch)))
                    self._connected.set()
                    self._bump()
                    if outage_logged:
                        log.warning("LISTEN connection re-established")
                        outage_logged = False
                    delay = 0.1
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=1.0):
                            self._deliver(n.channel, n.payload)
                        # a cheap liveness check, so a dead peer is noticed in seconds
                        conn.execute("SELECT 1")
            except Exception as e:
                self._connected.clear()
                self._conn = None
                self._bump()
                if self._stop.is_set():
                    break
                if not outage_logged:
                    log.warning(
                        "LISTEN connection lost (%s); retrying, polling meanwhile",
                        str(e).strip().splitlines()[0] if str(e) else type(e).__name__,
                    )
                    outage_logged = True
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        self._connected.clear()
