"""Plans: taskq's operations as generators that yield what to run and decide what the
results mean, with no connection in sight.

A plan yields a :class:`~taskq.sql.query.Query` and is sent back what the query read,
or yields an :class:`Atomic` sub-plan and is sent back that plan's return value. An
error raised by a statement (translated to a taskq error where it has a meaning, see
``taskq.db.errors``) is thrown into the plan at the ``yield``, so a plan can catch it.
A plan's return value is the operation's result.

``taskq.db`` has two executors for plans, one synchronous and one on asyncio; they are
the only places that know about connections, so both faces of the API run the same
plans, the same SQL, the same validation and the same decisions.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from taskq.sql.query import Query

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Atomic(Generic[R]):
    """Run ``plan`` so that, if it raises, nothing it did remains and the connection is
    still usable: a savepoint inside a transaction, else a transaction of its own (a
    plan that is one statement under autocommit is atomic by itself)."""

    plan: Plan[R]
    single: bool = False
    """The plan is one statement: under autocommit and outside a transaction it needs
    no transaction of its own."""


Op = Query[Any] | Atomic[Any]
Plan = Generator[Op, Any, R]


def run(query: Query[R]) -> Generator[Op, Any, R]:
    """``result = yield from run(query)``: one statement, typed."""
    result: R = yield query
    return result


def atomic(plan: Plan[R], *, single: bool = False) -> Generator[Op, Any, R]:
    """``result = yield from atomic(plan)``: a sub-plan that succeeds or leaves nothing."""
    result: R = yield Atomic(plan, single)
    return result


def just(query: Query[R]) -> Plan[R]:
    """A plan of one statement."""
    return (yield from run(query))
