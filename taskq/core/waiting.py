"""The policy of every wait for a change in the database (claiming, watching): check,
then sleep until a notification or the next poll, until a deadline. No I/O: the faces
run it with their own clock-free sleeps (a thread's condition, an asyncio wait)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence


class Deadline:
    """How long the next sleep may be: the poll interval, cut to what is left of
    ``timeout`` (None: forever)."""

    __slots__ = ("poll", "end", "timeout")

    def __init__(self, timeout: float | None, poll: float) -> None:
        self.poll = poll
        self.timeout = timeout
        self.end = None if timeout is None else time.monotonic() + timeout

    def next_wait(self, cap: float | None = None) -> float | None:
        """Seconds to sleep before checking again, or None once the time is up."""
        wait = self.poll if cap is None else min(self.poll, cap)
        if self.end is not None:
            left = self.end - time.monotonic()
            if left <= 0:
                return None
            wait = min(wait, left)
        return wait


def claim_queues(queues: Iterable[object]) -> list[str]:
    """The queues a claim names, checked and without repeats (empty: any queue)."""
    out: list[str] = []
    for q in queues:
        if not isinstance(q, str) or not q:
            raise ValueError(f"queue names must be non-empty strings, got {q!r}")
        out.append(q)
    return list(dict.fromkeys(out))


def wake_keys(channel: str, queues: Sequence[str]) -> list[tuple[str, str]]:
    """The notifications that wake a claim on ``queues`` (any queue: every one)."""
    return [(channel, q) for q in queues] or [(channel, "*")]
