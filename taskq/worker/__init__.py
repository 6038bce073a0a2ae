"""The worker process (``taskq worker``): see worker.py for how it is built."""

from taskq.core.defaults import WORKER_STALE
from taskq.worker.identity import Identity
from taskq.worker.worker import Worker, WorkerConfig

__all__ = ["WORKER_STALE", "Identity", "Worker", "WorkerConfig"]
