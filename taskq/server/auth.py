"""Who is asking: the bearer token of a request, checked against ``api_tokens`` on
every request through a cache that a revocation's NOTIFY empties (so a revoked token
stops with the next request once the notification is in), and the scope each route
needs.

The dashboard's session cookie carries the same token (HttpOnly, SameSite=Strict); the
API accepts it for reads only (GET, HEAD), so a browser's EventSource can stream a
task's events, while every change through the API needs the Authorization header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taskq.server.errors import ApiError
from taskq.server.state import ServerState
from taskq.server.tokens import Principal

COOKIE = "taskq_session"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
bearer = HTTPBearer(auto_error=False, description="a token from `taskq token create`")


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.taskq
    return state


async def identify(request: Request, token: str) -> Principal | None:
    return await state_of(request).tokens.verify(token)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Principal:
    """The principal of the request's bearer token (or session cookie, for reads);
    401 when there is none, or it is unknown or revoked."""
    header = request.headers.get("authorization")
    token: str | None = None
    if credentials is not None:
        token = credentials.credentials.strip()
    elif header is not None:
        raise ApiError(401, "the Authorization header must be 'Bearer <token>'", headers=_CHALLENGE)
    elif request.method in ("GET", "HEAD"):
        token = request.cookies.get(COOKIE)
    if not token:
        raise ApiError(401, "a bearer token is needed (Authorization: Bearer <token>)",
                       headers=_CHALLENGE)  # fmt: skip
    found = await identify(request, token)
    if found is None:
        raise ApiError(401, "unknown or revoked token", headers=_CHALLENGE)
    request.state.principal = found
    return found


def need(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the request's principal, 403 unless its scope covers ``scope``."""

    async def check(p: Annotated[Principal, Depends(principal)]) -> Principal:
        if not p.allows(scope):
            raise ApiError(403, f"token {p.name!r} has scope {p.scope}; this needs {scope}")
        return p

    check.__name__ = f"need_{scope}"
    return check


def requires(scope: str) -> list[Any]:
    """``dependencies=`` for a route that needs ``scope``."""
    return [Depends(need(scope))]
