"""Bearer tokens for the HTTP service: how they look, how they are stored, how they
are checked. No web framework here: ``taskq token`` uses it without the server extra.

A token is ``taskq_<prefix>_<secret>``: 12 hex characters of public prefix (the row's
key, shown by ``taskq token list``) and 43 characters of secret (256 random bits).
``<schema>.api_tokens`` keeps the prefix and the SHA-256 of the whole token, never the
token. Checking a token reads its row by prefix and compares the hashes with
``hmac.compare_digest`` (constant time); an unknown prefix is compared against a dummy
hash, so both paths do the same work. The server keeps the tokens it checked in a
``TokenCache`` that every revocation's NOTIFY empties, so a revoked token stops working
as soon as that notification arrives (at commit, give or take milliseconds).

Scopes are ordered: ``read`` may GET; ``write`` may also enqueue, cancel and retry;
``admin`` may also manage schedules.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from taskq.actions.plan import Plan, run
from taskq.core.errors import TaskqError
from taskq.sql import Statements

SCOPES = ("read", "write", "admin")
_RANK = {s: i for i, s in enumerate(SCOPES)}
_TOKEN = re.compile(r"^taskq_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
_DUMMY = hashlib.sha256(b"taskq: no such token").hexdigest()
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the token's name and scope (and its prefix)."""

    name: str
    scope: str
    prefix: str

    def allows(self, needed: str) -> bool:
        return _RANK[self.scope] >= _RANK[needed]


def check_scope(scope: str) -> str:
    if scope not in _RANK:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    return scope


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a token needs a name (--name)")
    if len(name) > MAX_NAME or "\x00" in name or not name.isprintable():
        raise ValueError(f"a token name is printable text of at most {MAX_NAME} characters")
    return name


_SECRET_ALPHABET = string.ascii_letters + string.digits


def new_token() -> tuple[str, str]:
    """A fresh token and its prefix: ``taskq_<12 hex>_<43 letters and digits>`` (256
    bits of secret). The secret holds no ``_`` or ``-``, so the token splits on ``_``
    into exactly three parts and a double-click selects all of it."""
    prefix = secrets.token_hex(6)
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(43))
    return f"taskq_{prefix}_{secret}", prefix


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def prefix_of(token: str) -> str | None:
    """The prefix of a well-formed token, else None."""
    m = _TOKEN.match(token)
    return m.group(1) if m else None


def create(stmts: Statements, name: str, scope: str) -> Plan[tuple[str, dict[str, Any]]]:
    """Store a new token; returns it (the only time it is seen) and its row."""
    name, scope = check_name(name), check_scope(scope)
    token, prefix = new_token()
    row = yield from run(stmts.tokens.create(prefix, name, hash_token(token), scope))
    if row is None:
        raise TaskqError(f"an active token named {name!r} exists: revoke it or pick another name")
    return token, row


def revoke(stmts: Statements, name: str) -> Plan[dict[str, Any]]:
    row = yield from run(stmts.tokens.revoke(name))
    if row is None:
        raise TaskqError(f"no active token named {name!r}")
    return row


def verify(stmts: Statements, token: str) -> Plan[Principal | None]:
    """The principal ``token`` stands for, or None (malformed, unknown or revoked)."""
    prefix = prefix_of(token)
    row = None if prefix is None else (yield from run(stmts.tokens.find(prefix)))
    same = hmac.compare_digest(hash_token(token), row["hash"] if row else _DUMMY)
    if row is None or not same:
        return None
    return Principal(row["name"], row["scope"], row["prefix"])


def csrf_token(token: str) -> str:
    """The CSRF token of a dashboard session: derived from its bearer token, so only a
    page that was served to the holder of the session cookie can know it."""
    return hmac.new(token.encode(), b"taskq dashboard csrf", hashlib.sha256).hexdigest()[:32]


class TokenCache:
    """The principals of tokens checked recently, so a request needs no read of
    ``api_tokens`` while nothing changed there.

    An entry holds while the server's LISTEN connection is up and no revocation notice
    (``tokens.revoke`` NOTIFYs the schema's tokens channel) arrived since the read that
    made it: any notice drops every entry, and so does a lost connection (anything may
    have been missed); while the connection is down nothing is cached. So a revocation
    takes effect as soon as its notification arrives, milliseconds after its commit,
    and ``max_age`` bounds an entry's life whatever happens.
    """

    def __init__(self, db: Any, *, max_age: float = 60.0, size: int = 10_000) -> None:
        from taskq.db.listen import ANY

        self._db = db
        self._stmts: Statements = db.settings.stmts
        self._keys = [(self._stmts.tokens.channel, ANY)]
        self._listener: Any = None
        self._entries: dict[str, tuple[str, Principal, Any, float]] = {}
        self._max_age = max_age
        self._size = size
        self.reads = 0

    async def start(self) -> None:
        self._listener = await self._db.listener()
        if self._listener is not None:
            self._listener.interest(self._keys)

    def _mark(self) -> Any:
        listener = self._listener
        return listener.mark(self._keys) if listener is not None and listener.connected else None

    async def verify(self, token: str) -> Principal | None:
        import time

        prefix = prefix_of(token)
        if prefix is None:
            return None
        digest = hash_token(token)
        mark = self._mark()
        entry = self._entries.get(prefix)
        if (entry is not None and mark is not None and entry[2] == mark
                and time.monotonic() - entry[3] < self._max_age):  # fmt: skip
            return entry[1] if hmac.compare_digest(digest, entry[0]) else None
        self.reads += 1
        found: Principal | None = await self._db.run(verify(self._stmts, token))
        if found is None:
            self._entries.pop(prefix, None)
        elif mark is not None:
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[prefix] = (digest, found, mark, time.monotonic())
        return found
