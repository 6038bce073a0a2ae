"""taskq on asyncio: ``AsyncQueuer``, ``AsyncDequeuer``, ``AsyncTasks``,
``AsyncScheduler``.

The same methods, arguments, return values and errors as their synchronous namesakes
(``taskq.Queuer`` and friends), as coroutines. They run the same plans
(``taskq.actions``), the same SQL and the same validation through psycopg's
``AsyncConnection``, so the same request stores the same row whichever face enqueued
it. Nothing blocks the event loop: there is no thread behind a coroutine, and waits
(``dequeue(timeout=...)``, ``wait``, ``watch``) sleep on the loop, woken by one LISTEN
connection per object (``taskq.db.alisten``) with the same slow poll as safety net.

``db`` is a URI (the object owns a pool, opened on first use; ``await close()`` it or
use ``async with``), a ``psycopg_pool.AsyncConnectionPool``, an open
``psycopg.AsyncConnection``, or a SQLAlchemy ``AsyncConnection``/``AsyncSession`` on
psycopg 3: then taskq joins the caller's transaction and never commits it.
"""

from taskq.aio.dequeuer import AsyncDequeuer
from taskq.aio.queuer import AsyncQueuer
from taskq.aio.scheduler import AsyncScheduler
from taskq.aio.tasks import AsyncTasks

__all__ = ["AsyncDequeuer", "AsyncQueuer", "AsyncScheduler", "AsyncTasks"]
