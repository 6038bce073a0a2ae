"""A plain service on SQLAlchemy's synchronous ``Session``: placing an order stores it
and enqueues its invoice in one transaction, and a ``taskq worker`` renders invoices.

    python service.py setup                 # the app's table and taskq's (idempotent)
    python service.py place ada@example.com 1250
    python service.py place bob@example.com 990 --fail   # rolled back: no order, no task
    taskq worker service:registry --queue invoices
    python service.py show 1                # the order, with its invoice once rendered

The database is ``DATABASE_URL``, else ``TASKQ_DATABASE_URL``, else taskq's embedded
PostgreSQL; taskq's tables live in ``TASKQ_SCHEMA`` (default ``taskq``) there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sqlalchemy import String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import taskq


def database_url() -> str:
    url = os.environ.get("DATABASE_URL") or os.environ.get("TASKQ_DATABASE_URL")
    if not url:
        from taskq.db.embedded import embedded_url  # zero configuration, for trying it

        url = embedded_url()
    return url


URL = database_url()
engine = create_engine("postgresql+psycopg://" + URL.split("://", 1)[1])  # psycopg 3


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "service_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    total_cents: Mapped[int]
    invoice: Mapped[str | None] = mapped_column(String(40), default=None)


# ---- the service ------------------------------------------------------------------------


def place_order(session: Session, email: str, total_cents: int) -> tuple[Order, taskq.Task]:
    """Store an order and enqueue its invoice, in the caller's transaction."""
    order = Order(email=email, total_cents=total_cents)
    session.add(order)
    session.flush()  # the order's id
    task = taskq.Queuer(session).enqueue(
        queue="invoices", type="invoice.render", spec={"order_id": order.id},
        unique_key=f"invoice-{order.id}",
    )  # fmt: skip
    return order, task


# ---- the worker side ----------------------------------------------------------------------

registry = taskq.Registry()


@registry.task("invoice.render", max_attempts=5, timeout=60)
def render_invoice(ctx: taskq.TaskContext) -> dict[str, object]:
    with Session(engine) as session, session.begin():
        order = session.get(Order, ctx.spec["order_id"], with_for_update=True)
        if order is None:
            raise taskq.TaskFailed(f"order {ctx.spec['order_id']} is gone")
        order.invoice = order.invoice or f"INV-{order.id:06d}"
        return {"order_id": order.id, "invoice": order.invoice}


# ---- the command line ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup")
    place = sub.add_parser("place")
    place.add_argument("email")
    place.add_argument("total_cents", type=int)
    place.add_argument("--fail", action="store_true", help="fail after enqueueing (rollback)")
    show = sub.add_parser("show")
    show.add_argument("order_id", type=int)
    args = parser.parse_args(argv)

    if args.command == "setup":
        Base.metadata.create_all(engine)
        taskq.migrate(URL)
        print("ready")
    elif args.command == "place":
        try:
            with Session(engine) as session, session.begin():  # commits at the end
                order, task = place_order(session, args.email, args.total_cents)
                placed = {"order_id": order.id, "task_id": task.id}
                if args.fail:
                    raise RuntimeError("payment provider down")
            print(json.dumps(placed))
        except RuntimeError as e:
            print(json.dumps({"rolled_back": str(e), "task_id": placed["task_id"]}))
            return 1
    else:
        with Session(engine) as session:
            order = session.get(Order, args.order_id)
            if order is None:
                print(json.dumps({"error": "no such order"}))
                return 1
            print(json.dumps({"order_id": order.id, "invoice": order.invoice}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
