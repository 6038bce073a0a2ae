"""Who a worker process is: a fresh UUID per start, plus host and pid for people.

A restarted process (or a pod with the same host name) never reuses an identity, so
its predecessor's tasks are never mistaken for its own.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Identity:
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} ({self.id[:8]})"
