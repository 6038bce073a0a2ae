"""Background services with one shape, and the runner that runs them.

A service has a ``name``, a ``run_once(now=None)`` that does one round of work and
returns a small result (tests call it directly, passing ``now`` to move time instead
of sleeping), a ``next_delay()`` (seconds until the next round), and a ``wait(delay,
stop)`` that sleeps that long or less (the cron ticker wakes early on NOTIFY). The
worker runs the rescuer; the scheduler process runs the rescuer, the pruner and the
cron ticker. Every service is safe to run in any number of processes at once (see
each module), so no leader is needed for correctness.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from typing import Any

from taskq.sql.errors import is_outage

log = logging.getLogger("taskq.services")


class Service:
    """The skeleton every background service fills in."""

    name = "service"
    interval = 1.0

    def run_once(self, now: dt.datetime | None = None) -> Any:
        """Do one round of work and return a small result (for tests and logs)."""
        raise NotImplementedError

    def next_delay(self) -> float:
        """Seconds to sleep before the next round."""
        return self.interval

    def wait(self, delay: float, stop: threading.Event) -> None:
        """Sleep ``delay`` seconds, returning early once ``stop`` is set."""
        stop.wait(delay)

    def close(self) -> None:
        """Release what the service holds (connections); called once it stopped."""


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Runner:
    """Runs services on one thread each until ``stop()``; a failing round is logged once
    per outage and retried after the service's delay (capped backoff on errors).

    With ``one_outage_line``, losing the database is logged once for all services
    together ("database unreachable ..."), and its return once at INFO, however many
    services notice; other errors are still logged once per service.
    """

    def __init__(
        self,
        services: Sequence[Service],
        stop: threading.Event | None = None,
        *,
        one_outage_line: bool = False,
    ) -> None:
        self.services = list(services)
        self.stop_event = stop or threading.Event()
        self._threads: list[threading.Thread] = []
        self.one_outage_line = one_outage_line
        self._outage = False
        self._outage_lock = threading.Lock()

    def start(self) -> None:
        for s in self.services:
            t = threading.Thread(target=self._loop, args=(s,), name=f"taskq-{s.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)

    def _outage_began(self, first: str) -> None:
        with self._outage_lock:
            if not self._outage:
                self._outage = True
                log.warning("database unreachable (%s); retrying", first)

    def _outage_ended(self) -> None:
        with self._outage_lock:
            if self._outage:
                self._outage = False
                log.info("database reachable again")

    def _loop(self, service: Service) -> None:
        failing: str | None = None  # None, "outage" or "error"
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                service.run_once()
                if failing == "outage":
                    self._outage_ended()
                elif failing:
                    log.warning("%s: working again", service.name)
                failing = None
                backoff = 1.0
                delay = service.next_delay()
            except Exception as e:
                if self.one_outage_line and is_outage(e):
                    self._outage_began(first_line(e))
                    failing = "outage"
                elif not failing:
                    log.warning("%s: %s (retrying)", service.name, first_line(e))
                    failing = "error"
                base = service.next_delay()
                delay = min(backoff, base if base > 0 else 5.0)
                backoff = min(backoff * 2, 30.0)
            if failing is None:
                service.wait(delay, self.stop_event)
            else:
                self.stop_event.wait(delay)
