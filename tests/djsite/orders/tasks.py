"""The tasks of the test project: Django's own ``@task``, nothing of taskq's."""

import asyncio
import os
import threading

from django.db import connection
from django.db.models import F

from djsite.orders.models import Order

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task


class PaymentDeclined(Exception):
    pass


@task()
def confirm_order(order_id: int) -> dict:
    updated = Order.objects.filter(id=order_id).update(confirmations=F("confirmations") + 1)
    return {"order": order_id, "updated": updated}


@task(queue_name="mail", priority=10)
def send_receipt(email: str, *, lines: list) -> str:
    return f"{email}: {len(lines)} lines"


@task()
def charge(amount: int) -> None:
    raise PaymentDeclined(f"card declined for {amount}")


@task()
async def confirm_later(order_id: int) -> int:
    await asyncio.sleep(0)
    order = await Order.objects.aget(id=order_id)
    order.confirmations += 1
    await order.asave()
    return order.confirmations


@task(takes_context=True)
def whoami(context) -> dict:
    return {
        "id": context.task_result.id,
        "attempt": context.attempt,
        "status": str(context.task_result.status),
    }


@task()
def backend_pid() -> dict:
    """Which connection the task used: the process id the server gave it at connection
    (the server's own; behind PgBouncer, the pooler's for this client connection, while
    pg_backend_pid() would name whichever server connection the pooler lent)."""
    with connection.cursor() as cur:
        cur.execute("SELECT 1")
    pid = connection.connection.info.backend_pid
    return {"pid": pid, "thread": threading.current_thread().name, "process": os.getpid()}


@task()
def returns_a_set() -> object:
    return {1, 2}
