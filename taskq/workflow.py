"""What happens, in the same transaction, when tasks reach a final status.

- A finished chain link makes the next link runnable, handing it the result.
- A chain link that ends without finishing (failed for good, cancelled, rescued into
  failure) cancels the links that have not started.
- ``on_success`` requests are enqueued in the transaction that finishes the task, so
  they are neither lost nor doubled; the follow-up reads the task's result as
  ``ctx.previous_result``.
- A group's follow-up is enqueued exactly once, by whichever transaction ends its
  last member: each such transaction locks the group row, and only then (in a new
  statement, so with a fresh snapshot that sees the other finishers' commits) checks
  whether any member is still waiting or running.

Plain tasks (no chain, group or follow-up) cost nothing here: no statement runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from taskq.errors import TaskAlreadyExists
from taskq.queries import Conn, Queries, dumps
from taskq.queuer import enqueue_followups
from taskq.requests import request_from_json
from taskq.types import TaskEnqueueRequest

log = logging.getLogger("taskq.workflow")

FINAL = frozenset({"finished", "failed", "cancelled"})


def needs_followup(row: Mapping[str, Any]) -> bool:
    return row["status"] in FINAL and bool(
        row.get("chain_id") or row.get("group_id") or row.get("on_success")
    )


def after_final(conn: Conn, q: Queries, rows: Iterable[Mapping[str, Any]]) -> None:
    """Run the follow-ups of ``rows`` (tasks that just changed status) on ``conn``."""
    pending = [r for r in rows if needs_followup(r)]
    groups: set[str] = set()
    follow: list[tuple[TaskEnqueueRequest, dict[str, Any]]] = []
    while pending:
        row = pending.pop()
        status = row["status"]
        if row.get("chain_id"):
            if status == "finished":
                q.release_chain_next(conn, str(row["id"]), dumps(row.get("result")))
            else:
                reason = f"cancelled because chain link {row['id']} ended {status}"
                pending.extend(
                    r for r in q.cancel_chain_rest(conn, str(row["chain_id"]), reason)
                    if needs_followup(r)
                )  # fmt: skip
        if status == "finished" and row.get("on_success"):
            # handed this task's result, as a chain's next link is
            extra = {"previous_result": row.get("result")}
            follow.append((request_from_json(row["on_success"]), extra))
        if row.get("group_id"):
            groups.add(str(row["group_id"]))
    if groups:
        for group_id, on_complete in q.group_complete(conn, sorted(groups)):
            if on_complete:
                outcomes = [
                    {"id": t.id, "status": t.status.value, "result": t.result, "error": t.error}
                    for t in q.members(conn, "group", group_id)
                ]
                follow.append((request_from_json(on_complete), {"previous_result": outcomes}))
    for request, extra in follow:
        # Each follow-up in its own savepoint: one whose unique_key is already held is
        # skipped (that task is already queued) instead of making the finish of its
        # parent impossible to commit.
        try:
            with conn.transaction():
                enqueue_followups(conn, q, [(request, extra)])
        except TaskAlreadyExists as e:
            log.warning("follow-up not enqueued: %s", e)
