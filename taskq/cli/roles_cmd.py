"""``taskq roles``: the grants a least-privilege role needs, printed or applied."""

from __future__ import annotations

import argparse
from typing import Any

from taskq.cli.common import die, open_db
from taskq.db.roles import KINDS


def register(sub: Any) -> None:
    p = sub.add_parser(
        "roles",
        help="print, apply or check the grants of a least-privilege role",
        description="Kinds: " + ", ".join(KINDS) + ". Every kind gets USAGE on the schema "
        "and only the table privileges its processes use; see taskq/db/roles.py.",
    )
    rsub = p.add_subparsers(dest="roles_command", metavar="ACTION", parser_class=type(p))
    rsub.required = True
    g = rsub.add_parser("grant", help="print (or --apply) the grants of KIND for ROLE")
    g.add_argument("kind", choices=list(KINDS), help="what the role runs")
    g.add_argument("role", help="an existing PostgreSQL role")
    g.add_argument("--apply", action="store_true", help="run them (as the schema's owner)")
    g.set_defaults(func=cmd_grant)
    r = rsub.add_parser("revoke", help="print (or --apply) the revokes of every taskq grant")
    r.add_argument("role", help="an existing PostgreSQL role")
    r.add_argument("--apply", action="store_true", help="run them (as the schema's owner)")
    r.set_defaults(func=cmd_revoke)
    c = rsub.add_parser("check", help="say what the connected role lacks to run as KIND")
    c.add_argument("kind", choices=list(KINDS), help="what the role should run")
    c.set_defaults(func=cmd_check)


def _emit(args: argparse.Namespace, statements: list[Any]) -> int:
    from taskq.db.roles import apply

    if not args.apply:
        for s in statements:
            print(s.as_string(None) + ";")
        return 0
    db = open_db(args)
    try:
        apply(db, statements)
    finally:
        db.close()
    print(f"applied {len(statements)} statement(s)")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    from taskq.db.roles import grants

    return _emit(args, grants(args.kind, args.role, args.schema))


def cmd_revoke(args: argparse.Namespace) -> int:
    from taskq.db.roles import revokes

    return _emit(args, revokes(args.role, args.schema))


def cmd_check(args: argparse.Namespace) -> int:
    from taskq.db.roles import missing

    db = open_db(args)
    try:
        lacking = missing(db, args.kind)
    finally:
        db.close()
    if lacking:
        die(f"this role cannot run as {args.kind}: it lacks " + ", ".join(lacking))
    print(f"this role has what a {args.kind} needs in schema {db.schema}")
    return 0
