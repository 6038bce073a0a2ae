"""``taskq token create|list|revoke``: the bearer tokens of ``taskq serve``.

A token is printed once, by ``create``; only its SHA-256 is stored
(``<schema>.api_tokens``). Revoking takes effect with the server's next request.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from taskq.cli.common import die, open_db
from taskq.cli.output import format_time as short_time
from taskq.cli.output import print_json, table


def register(sub: Any) -> None:
    from taskq.server.tokens import SCOPES

    p = sub.add_parser("token", help="create, list and revoke API tokens for taskq serve")
    tsub = p.add_subparsers(dest="token_command", metavar="ACTION", parser_class=type(p))
    tsub.required = True

    c = tsub.add_parser("create", help="create a token and print it (once)",
                        description="Create a bearer token for taskq serve and print it on "
                        "stdout; it is never shown again (only its hash is stored). read may "
                        "GET; write may also enqueue, cancel and retry; admin may also "
                        "manage schedules.")  # fmt: skip
    c.add_argument("--name", required=True, help="a name to list and revoke it by")
    c.add_argument("--scope", required=True, choices=SCOPES,
                   help="read: GET only; write: also enqueue, cancel, retry; admin: also schedules")  # fmt: skip
    c.add_argument("--json", action="store_true", help="print the token and its row as JSON")
    c.set_defaults(func=cmd_create)

    ls = tsub.add_parser("list", help="list tokens (never the tokens themselves)")
    ls.add_argument("--all", action="store_true", help="include revoked tokens")
    ls.add_argument("--json", action="store_true", help="print the rows as JSON")
    ls.set_defaults(func=cmd_list)

    r = tsub.add_parser("revoke", help="revoke the active token NAME (effective at once)")
    r.add_argument("name", help="the token's name")
    r.set_defaults(func=cmd_revoke)


@contextlib.contextmanager
def _migrated(schema: str) -> Iterator[None]:
    import psycopg.errors

    try:
        yield
    except psycopg.errors.UndefinedTable:
        die(f"schema {schema!r} has no api_tokens table: run `taskq migrate` first")


def cmd_create(args: argparse.Namespace) -> int:
    from taskq.server import tokens

    db = open_db(args)
    try:
        with _migrated(db.schema):
            token, row = db.run(tokens.create(db.settings.stmts, args.name, args.scope))
    finally:
        db.close()
    if args.json:
        print_json({"token": token, **row})
        return 0
    print(token)
    print(f"token {row['name']!r} (scope {row['scope']}, prefix {row['prefix']}) created: "
          "it is shown only this once", file=sys.stderr)  # fmt: skip
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    db = open_db(args)
    try:
        with _migrated(db.schema):
            rows = db.query(db.settings.stmts.tokens.list_tokens(args.all))
    finally:
        db.close()
    if args.json:
        print_json(rows)
        return 0
    out = [
        (r["name"], r["scope"], r["prefix"], short_time(r["created_at"]),
         "revoked " + short_time(r["revoked_at"]) if r["revoked_at"] else "active")
        for r in rows
    ]  # fmt: skip
    print(table(("NAME", "SCOPE", "PREFIX", "CREATED", "STATE"), out))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from taskq.server import tokens

    db = open_db(args)
    try:
        with _migrated(db.schema):
            row = db.run(tokens.revoke(db.settings.stmts, args.name))
    finally:
        db.close()
    print(f"revoked token {row['name']!r} (prefix {row['prefix']})")
    return 0
