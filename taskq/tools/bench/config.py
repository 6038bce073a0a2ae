"""What a ``taskq bench`` run measures (its configuration and modes) and its progress
lines on stderr."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from typing import Any, TextIO

MODES = ("enqueue", "burndown", "finished", "stale", "latency", "vacuum")
"""Every mode, in the order they run."""

ALIASES = {
    "burn-down": "burndown",
    "drain": "burndown",
    "steady": "latency",
    "rate": "latency",
    "enqueue-throughput": "enqueue",
    "long-transaction": "vacuum",
    "stale-statistics": "stale",
}

QUEUE = "bench"
BATCH = 500
POLL = 0.05
STALL_TIMEOUT = 60.0
"""A burn-down that finishes no task for this many seconds is an error."""

WORKER_APP = "taskq.tools.bench_app:registry"


class BenchError(RuntimeError):
    """A measurement could not be made (a worker died, nothing finished in time...)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    tasks: int = 20_000
    workers: int = 2
    concurrency: int = 10
    rate: float = 100.0
    duration: float = 15.0
    finished: int = 100_000
    modes: tuple[str, ...] = MODES
    worker_log_level: str | None = None  # None: the worker's default (INFO)
    asyncio: bool = False  # enqueue mode: AsyncQueuer and Queuer, alternating (--async)
    prefetch: bool = False  # workers started with --prefetch

    def __post_init__(self) -> None:
        for name in ("tasks", "workers", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1")
        if self.rate <= 0 or self.duration <= 0:
            raise ValueError("--rate and --duration must be above 0")
        if self.rate * self.duration < 1:
            raise ValueError("--rate x --duration must be at least one task")
        if self.finished < 0:
            raise ValueError("--finished must be at least 0")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown:
            raise ValueError(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
        if not self.modes:
            raise ValueError("no mode selected")
        if self.worker_log_level not in (None, "DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"unknown worker log level {self.worker_log_level!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        """Small sizes: the whole run takes seconds (a CI smoke test)."""
        base = cls(tasks=1000, workers=1, concurrency=10, rate=50.0, duration=1.0, finished=5000)
        return replace(base, **overrides)


def parse_modes(text: str) -> tuple[str, ...]:
    """``"burndown,latency"`` -> ("burndown", "latency"), in run order; ValueError else."""
    chosen: set[str] = set()
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        name = ALIASES.get(name, name)
        if name == "all":
            chosen.update(MODES)
        elif name in MODES:
            chosen.add(name)
        else:
            raise ValueError(f"unknown mode {part.strip()!r}; choose from {', '.join(MODES)}")
    if not chosen:
        raise ValueError("no mode given")
    return tuple(m for m in MODES if m in chosen)


# ---- progress on stderr --------------------------------------------------------------


class Progress:
    """Phase lines on stderr, and a bar redrawn in place when stderr is a terminal."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar_shown = False
        self._last = 0.0

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        self._clear()
        self.stream.write(f"taskq bench: {text}\n")
        self.stream.flush()

    def bar(self, label: str, done: int, total: int) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        frac = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
        width = 24
        filled = int(round(frac * width))
        line = f"  {label} [{'#' * filled}{'-' * (width - filled)}] {frac * 100:3.0f}% {done:,}/{total:,}"
        self.stream.write("\r" + line[:110].ljust(110))
        self.stream.flush()
        self._bar_shown = True

    def _clear(self) -> None:
        if self._bar_shown:
            self.stream.write("\r" + " " * 110 + "\r")
            self._bar_shown = False
