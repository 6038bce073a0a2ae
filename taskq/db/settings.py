"""What a database object is configured with, resolved once from its arguments and
the environment; shared by the synchronous and the asynchronous ``Database``."""

from __future__ import annotations

from dataclasses import dataclass, field

from taskq.actions.enqueue import ColumnCache
from taskq.core.config import database_url, listen_url, read_url, resolve_pooler, resolve_schema
from taskq.core.defaults import POLL_INTERVAL, POOLER_POLL_INTERVAL
from taskq.sql import Statements, statements


@dataclass(frozen=True)
class Settings:
    schema: str
    pooler: str | None
    url: str | None
    """The URI this object's own pool connects to (None: a caller's pool or connection)."""
    listen_url: str | None
    """Where LISTEN runs; None: poll only."""
    read_url: str | None
    """A replica for reads that may lag; None: reads go to ``url``."""
    poll_interval: float
    application_name: str
    stmts: Statements = field(repr=False)
    columns: ColumnCache = field(repr=False, compare=False)

    @property
    def prepare(self) -> bool | None:
        """``prepare=`` for every execute: False behind a transaction-mode pooler."""
        return False if self.pooler == "transaction" else None


def resolve(
    *,
    schema: str | None,
    url: str | None,
    owns: bool,
    pooler: str | None,
    listen: str | None,
    read: str | None,
    poll_interval: float | None,
    application_name: str,
) -> Settings:
    """Settings for a database object. ``url`` None with ``owns``: the configured URL,
    else the embedded server (started here)."""
    mode = resolve_pooler(pooler)
    if owns:
        url = database_url(url)
        if url is None:
            from taskq.db.embedded import embedded_url

            url = embedded_url()
    name = resolve_schema(schema)
    if poll_interval is None:
        listening = listen_url(listen, url, mode)
        poll_interval = POLL_INTERVAL if listening else POOLER_POLL_INTERVAL
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be above 0 seconds, got {poll_interval}")
    return Settings(
        schema=name,
        pooler=mode,
        url=url,
        listen_url=listen_url(listen, url, mode),
        read_url=read_url(read),
        poll_interval=poll_interval,
        application_name=application_name,
        stmts=statements(name),
        columns=ColumnCache(),
    )
