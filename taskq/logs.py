"""Log formatting for taskq's processes: human-readable lines or one JSON object each.

Task state changes are logged on ``taskq.events`` with the task's id, queue, type and
attempt (and duration and error where they apply). Specs are never logged, and
database URLs only through ``config.describe_target`` (no passwords).
"""

from __future__ import annotations

import json
import logging
import sys

_FIELDS = ("task_id", "queue", "task_type", "attempt", "max_attempts", "duration", "error")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for f in _FIELDS:
            if hasattr(record, f):
                out[f] = getattr(record, f)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [f"{f}={getattr(record, f)}" for f in _FIELDS if hasattr(record, f)]
        return f"{line} {' '.join(extra)}" if extra else line


def setup(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send taskq's logs to stderr in ``fmt`` ("text" or "json")."""
    import time

    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
