"""What happens, in the same transaction, when tasks reach a final status.

- A finished chain link makes the next link runnable, handing it the result.
- A chain link that ends without finishing (failed for good, cancelled, rescued into
  failure) cancels the links after it that have not started; the links before it are
  left as they are.
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

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from taskq.actions.enqueue import ColumnCache, insert_rows
from taskq.actions.plan import Plan, atomic, run
from taskq.core.encode import request_from_json, to_row
from taskq.core.errors import TaskAlreadyExists
from taskq.core.names import FINAL
from taskq.core.types import TaskEnqueueRequest
from taskq.sql import Statements

log = logging.getLogger("taskq.workflow")


def needs_followup(row: Mapping[str, Any]) -> bool:
    """Whether a task that just changed to ``row["status"]`` may start other work."""
    return row["status"] in FINAL and bool(
        row.get("chain_id") or row.get("group_id") or row.get("on_success")
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def after_final(
    stmts: Statements, cache: ColumnCache, rows: Iterable[Mapping[str, Any]]
) -> Plan[None]:
    """Run the follow-ups of ``rows`` (tasks that just changed status; rows carry id,
    status, chain_id, chain_index, group_id, on_success and result)."""
    pending = [(r, True) for r in rows if needs_followup(r)]
    if not pending:
        return
    groups: set[str] = set()
    follow: list[tuple[TaskEnqueueRequest, dict[str, Any]]] = []
    while pending:
        row, own_chain = pending.pop()
        status = row["status"]
        if row.get("chain_id") and own_chain:
            if status == "finished":
                yield from run(
                    stmts.tasks.release_chain_next(str(row["id"]), _dumps(row.get("result")))
                )
            else:
                reason = f"cancelled because chain link {row['id']} ended {status}"
                index = row.get("chain_index")
                cancelled = yield from run(
                    stmts.tasks.cancel_chain_rest(
                        str(row["chain_id"]), -1 if index is None else int(index), reason
                    )
                )
                # the links cancelled here are after this one: their own chains' rest
                # is already cancelled, only their groups need looking at
                pending.extend((r, False) for r in cancelled if needs_followup(r))
        if status == "finished" and row.get("on_success"):
            # handed this task's result, as a chain's next link is
            extra = {"previous_result": row.get("result")}
            follow.append((request_from_json(row["on_success"]), extra))
        if row.get("group_id"):
            groups.add(str(row["group_id"]))
    if groups:
        ordered = sorted(groups)
        yield from run(stmts.tasks.group_lock(ordered))
        for group_id in ordered:
            on_complete = yield from run(stmts.tasks.group_complete(group_id))
            if on_complete:
                members = yield from run(stmts.tasks.group_members(group_id))
                outcomes = [
                    {"id": t.id, "status": t.status.value, "result": t.result, "error": t.error}
                    for t in members
                ]
                follow.append((request_from_json(on_complete), {"previous_result": outcomes}))
    for request, extra in follow:
        # Each follow-up on its own: one whose unique_key is already held is skipped
        # (that task is already queued) instead of making its parent's end impossible
        # to commit.
        try:
            yield from atomic(insert_rows(stmts, cache, [to_row(request, extra=extra)]))
        except TaskAlreadyExists as e:
            log.warning("follow-up not enqueued: %s", e)
