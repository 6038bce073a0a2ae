"""A FastAPI service on taskq's asyncio API and SQLAlchemy's AsyncSession.

- ``POST /orders`` stores an order and enqueues its packing task in the request's
  transaction: both commit together, or neither does (an order found to be out of
  stock after its task was enqueued is refused with 409 and leaves no task behind).
- ``GET /tasks/{id}`` shows a task's status and progress; ``GET /orders/{id}`` the
  order, which the task marks packed.

Run it (and a worker for its tasks) from this folder:

    uvicorn app:app
    taskq worker tasks:registry --queue orders
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from models import Base, Order
from pydantic import BaseModel, Field
from settings import DATABASE_URL, sqlalchemy_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from tasks import registry

import taskq
from taskq.aio import AsyncQueuer, AsyncTasks


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(sqlalchemy_url(DATABASE_URL))
    async with engine.begin() as conn:  # a real service runs its migrations instead
        await conn.run_sync(Base.metadata.create_all)
    await asyncio.to_thread(taskq.migrate, DATABASE_URL)  # likewise: `taskq migrate`
    # One pool each for the process: the queuer (with the registry's defaults) for
    # enqueues of its own, and the reader for task status.
    async with (
        AsyncQueuer(DATABASE_URL, registry=registry) as queuer,
        AsyncTasks(DATABASE_URL) as tasks,
    ):
        app.state.queuer = queuer
        app.state.tasks = tasks
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        yield
    await engine.dispose()


app = FastAPI(title="taskq + FastAPI example", lifespan=lifespan)


def joined(queuer: AsyncQueuer, session: AsyncSession) -> AsyncQueuer:
    """``queuer``'s settings on ``session``'s transaction. Given a session, taskq owns no
    pool and never commits: building one per request costs nothing."""
    return AsyncQueuer(session, registry=queuer.registry, schema=queuer.schema)


STOCK = 50
"""Items in the warehouse: a larger order is refused (after its task was enqueued)."""


class OutOfStock(Exception):
    pass


class NewOrder(BaseModel):
    email: str = Field(min_length=3, max_length=200)
    items: int = Field(ge=1, le=100)
    seconds_per_item: float = Field(default=0.2, ge=0, le=10)


@app.post("/orders", status_code=201)
async def place_order(body: NewOrder, request: Request) -> dict[str, Any]:
    session: AsyncSession
    async with request.app.state.sessions() as session:
        try:
            async with session.begin():
                order = Order(email=body.email, items=body.items)
                session.add(order)
                await session.flush()  # the order's id; a duplicate email fails here
                # The app's queuer joined to this request's session: the task is part
                # of this transaction and commits (or rolls back) with the order.
                task = await joined(request.app.state.queuer, session).enqueue(
                    queue="orders", type="order.pack",
                    spec={"order_id": order.id, "items": body.items,
                          "seconds_per_item": body.seconds_per_item},
                )  # fmt: skip
                if body.items > STOCK:  # raising here rolls back the order and the task
                    raise OutOfStock(f"only {STOCK} items in stock")
        except IntegrityError:
            raise HTTPException(409, f"an order for {body.email} exists already") from None
        except OutOfStock as e:
            raise HTTPException(409, str(e)) from None
    return {"order_id": order.id, "task_id": task.id}


@app.get("/tasks/{task_id}")
async def task_status(task_id: str, request: Request) -> dict[str, Any]:
    try:
        task = await request.app.state.tasks.get(task_id)
    except taskq.TaskNotFound:
        raise HTTPException(404, f"no task {task_id}") from None
    progress = taskq.Progress.from_json(task.progress)
    return {
        "id": task.id,
        "status": task.status.value,
        "progress": task.progress,
        "percent": None if progress is None else progress.fraction(),
        "result": task.result,
        "error": task.error,
    }


@app.get("/orders/{order_id}")
async def get_order(order_id: int, request: Request) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(404, f"no order {order_id}")
    return {"id": order.id, "email": order.email, "items": order.items, "status": order.status}
