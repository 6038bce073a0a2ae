"""Every default taskq uses, defined once and named. The CLI's flags, the classes'
keyword arguments and the documentation all refer to these names.

Times are in seconds unless the name says otherwise.
"""

from __future__ import annotations

import datetime as dt

# ---- tasks ---------------------------------------------------------------------------

MAX_ATTEMPTS = 1
"""Attempts a task gets when neither the request nor its registered type says."""

HEARTBEAT_TIMEOUT = 60.0
"""A running task whose last heartbeat is older than this is rescued."""

RETRY_DELAY = 1.0
"""Base of the retry backoff: retry_delay * 2^(attempt-1), capped at an hour, +-25 %."""

MAX_SPEC_BYTES = 1024 * 1024
"""Largest spec (its JSON text, in bytes) that enqueue accepts."""

MAX_ERROR_LENGTH = 8000
"""Longest error text stored by ``fail`` (characters); longer text is cut."""

# ---- workers and waiting ---------------------------------------------------------------

WORKER_STALE = 30.0
"""A worker process not seen for this long counts as vanished; the rescue takes back its
tasks without waiting out their heartbeat timeouts."""

POLL_INTERVAL = 2.0
"""While no NOTIFY arrives, claims and waits look at the database this often (the
safety net under LISTEN/NOTIFY)."""

POOLER_POLL_INTERVAL = 1.0
"""The same behind a transaction-mode pooler with no direct LISTEN connection, where
polling is the only wake-up."""

CONCURRENCY = 10
"""Handler slots of one ``taskq worker``."""

GRACE = 10.0
"""At shutdown, running handlers get this long to finish."""

# ---- background services ---------------------------------------------------------------

RESCUE_INTERVAL = 2.0
"""Every worker and scheduler process runs the rescue this often."""

RETENTION = dt.timedelta(days=7)
"""Finished, failed and cancelled tasks older than this are deleted by the pruner."""

PRUNE_INTERVAL = 60.0
"""The pruner runs this often."""

PURGE_BATCH = 1000
"""Rows deleted per statement by the pruner and ``Tasks.purge``."""

RESCUE_BATCH = 1000
"""Tasks rescued per statement."""

MISFIRE_GRACE = dt.timedelta(seconds=10)
"""A cron tick fired later than this after it came due counts as missed (one catch-up)."""

SCHEDULER_MAX_SLEEP = 5.0
"""The cron ticker looks at the schedules at least this often."""

# ---- connections ------------------------------------------------------------------------

ANSWER_TIMEOUT = 30.0
"""No wait on one of taskq's own connections lasts longer than this (the URL's
``tcp_user_timeout``, in ms, overrides it)."""

CONNECT_TIMEOUT = 10
"""Seconds to open a connection."""

POOL_SIZE = 10
"""Connections in the pool an object built from a URI owns (at most)."""

SCRAPE_TIMEOUT = 5.0
"""Statement timeout of the database gauges' query per Prometheus scrape."""

HEALTH_TIMEOUT = 3.0
"""Statement timeout of ``/healthz``'s query."""

# ---- processes and the command line ------------------------------------------------------

METRICS_HOST = "127.0.0.1"
"""Address ``--metrics-port``'s /metrics and /healthz bind to."""

PREFETCH = False
"""Whether a worker reserves short tasks ahead of its free slots, uncharged until they
start (``--prefetch``). Off by default: a handler that runs in the moment before its
start is recorded, on a worker that then loses its connection or dies, can run again
without an attempt charged for the first run."""

SERVE_HOST = "127.0.0.1"
"""Address ``taskq serve`` binds to (another needs a token created first)."""

SERVE_PORT = 8080
"""Port of ``taskq serve`` and of the service ``taskq demo`` starts."""

SERVE_APPLICATION_NAME = "taskq-serve"
"""``application_name`` of ``taskq serve``'s connections (pg_stat_activity)."""

DEMO_TIMEOUT = 120.0
"""Seconds ``taskq demo`` waits for its tasks before giving up."""

LOG_FORMAT = "text"
"""How ``taskq worker`` and ``taskq scheduler`` write their logs when the application
configured none: "text" lines or "json" objects, one per line, on stderr."""

LOG_LEVEL = "INFO"
"""Their log level then (INFO: a line per task state change)."""

LIST_LIMIT = 50
"""Rows ``taskq list`` and ``taskq workers`` print at most."""

ID_PREFIX_MIN = 6
"""Hex digits a task id prefix needs on the command line (``taskq show 3f2a9c``)."""
