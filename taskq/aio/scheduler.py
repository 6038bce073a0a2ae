"""``AsyncScheduler``: see ``taskq.aio``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from taskq.actions import schedules
from taskq.clients import AsyncClient
from taskq.core.schedules import target
from taskq.core.types import (
    Schedule,
    TaskScheduleRequest,
)

if TYPE_CHECKING:
    pass


class AsyncScheduler(AsyncClient):
    """Creates, lists, pauses and removes cron schedules (see ``taskq.Scheduler``)."""

    def __init__(
        self,
        db: Any = None,
        *,
        schema: str | None = None,
        pool_size: int = 4,
        pooler: str | None = None,
    ) -> None:
        super().__init__(db, schema=schema, pool_size=pool_size, pooler=pooler)

    async def schedule(
        self, request: TaskScheduleRequest, *, now: dt.datetime | None = None
    ) -> Schedule:
        plan = schedules.schedule(self._stmts, self._db.settings.columns, request, now)
        return await self._db.run(plan)

    async def ensure_schedule(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> None:
        key = target(request, queue, type, references)
        await self._db.run(schedules.ensure(self._stmts, self._db.settings.columns, key))

    async def unschedule(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> bool:
        key = target(request, queue, type, references)
        return await self._db.run(schedules.unschedule(self._stmts, self._db.settings.columns, key))

    async def pause(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
    ) -> Schedule:
        key = target(request, queue, type, references)
        return await self._db.run(schedules.pause(self._stmts, self._db.settings.columns, key))

    async def resume(
        self,
        request: TaskScheduleRequest | Schedule | None = None,
        /,
        *,
        queue: str | None = None,
        type: str | None = None,
        references: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> Schedule:
        key = target(request, queue, type, references)
        plan = schedules.resume(self._stmts, self._db.settings.columns, key, now)
        return await self._db.run(plan)

    async def list_schedules(self, queue: str | None = None) -> list[Schedule]:
        return await self._db.query(self._stmts.schedules.list_schedules(queue))
