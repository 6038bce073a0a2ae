"""The handlers, run by ``taskq worker tasks:registry`` next to the web app."""

import time

from models import Order
from settings import DATABASE_URL, sqlalchemy_url
from sqlalchemy import create_engine, update
from sqlalchemy.orm import Session

import taskq

registry = taskq.Registry()
engine = create_engine(sqlalchemy_url(DATABASE_URL))


@registry.task("order.pack", max_attempts=3, heartbeat_timeout=30)
def pack(ctx: taskq.TaskContext) -> dict:
    """Pack an order one item at a time, reporting progress as it goes."""
    order_id, items = ctx.spec["order_id"], ctx.spec["items"]
    for n in range(1, items + 1):
        ctx.progress(taskq.Progress(step=n, steps=items, status=f"packing item {n}"))
        time.sleep(ctx.spec.get("seconds_per_item", 0.2))  # the work itself
    with Session(engine) as session, session.begin():
        session.execute(update(Order).where(Order.id == order_id).values(status="packed"))
    return {"order_id": order_id, "packed": items}
