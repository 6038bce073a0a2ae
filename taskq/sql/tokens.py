"""The statements of ``taskq/sql/tokens.sql`` (the HTTP service's bearer tokens) for
one schema: one typed function each. Hashing and checking tokens is
``taskq.server.tokens``; nothing here sees a token in the clear."""

from __future__ import annotations

from typing import Any, LiteralString

from psycopg import sql

from taskq.core.names import channel
from taskq.sql.blocks import load, render
from taskq.sql.query import Query, read_dicts, read_scalar, statement

Dicts = list[dict[str, Any]]


def _read_row(names: Any, rows: Any) -> dict[str, Any] | None:
    found = read_dicts(names, rows)
    return found[0] if found else None


class TokenStatements:
    """``tokens.sql`` rendered for ``schema``."""

    FILE = "tokens.sql"

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = channel(schema, "_tokens")
        """NOTIFY channel of revocations (payload: the token's prefix)."""
        table = sql.Identifier(schema, "api_tokens")
        self._text: dict[str, LiteralString] = {
            b.name: render(b.text, api_tokens=table) for b in load(self.FILE).values()
        }

    def _q(self, name: str, params: dict[str, Any], read: Any) -> Query[Any]:
        return Query(f"tokens.{name}", self._text[name], params, read)

    def text(self, name: str) -> LiteralString:
        """The rendered text of statement ``name`` (for EXPLAIN in tests and tools)."""
        return self._text[name]

    @statement
    def create(
        self, prefix: str, name: str, token_hash: str, scope: str
    ) -> Query[dict[str, Any] | None]:
        """The new row, or None when an active token already has ``name``."""
        params = {"prefix": prefix, "name": name, "hash": token_hash, "scope": scope}
        return self._q("create", params, _read_row)

    @statement
    def find(self, prefix: str) -> Query[dict[str, Any] | None]:
        return self._q("find", {"prefix": prefix}, _read_row)

    @statement
    def list_tokens(self, revoked: bool = False) -> Query[Dicts]:
        return self._q("list_tokens", {"revoked": revoked}, read_dicts)

    @statement
    def revoke(self, name: str) -> Query[dict[str, Any] | None]:
        """The revoked row, or None when no active token has ``name``."""
        return self._q("revoke", {"name": name, "channel": self.channel}, _read_row)

    @statement
    def count_active(self) -> Query[int]:
        return self._q("count_active", {}, read_scalar)
