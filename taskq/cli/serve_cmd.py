"""``taskq serve``: the task service over HTTP (JSON API, dashboard, metrics).

Needs the optional extra ``taskq[server]`` (FastAPI, uvicorn, Jinja2); without it the
command says so in one line. On an address other than loopback it refuses to start
while no API token exists (``taskq token create``): the dashboard and the API would
answer nobody, or, worse, be mistaken for open.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

from taskq.cli.common import die, open_db, positive_int
from taskq.core.defaults import SERVE_APPLICATION_NAME, SERVE_HOST, SERVE_PORT


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API, the dashboard and /metrics",
        description="Serve taskq's JSON API under /api/v1 (OpenAPI at "
        "/api/v1/openapi.json), the web dashboard at /, Prometheus metrics at /metrics and "
        "/healthz. Requests authenticate with tokens from `taskq token create`. Needs "
        "the server extra: pip install 'taskq[server]'.",
    )
    p.add_argument("--host", default=SERVE_HOST, help=f"address to bind (default {SERVE_HOST})")
    p.add_argument("--port", type=_port, default=SERVE_PORT,
                   help=f"port (default {SERVE_PORT}; 0: any free)")  # fmt: skip
    p.add_argument("--pool-size", type=positive_int, default=10,
                   help="database connections at most (default 10)")  # fmt: skip
    p.add_argument("--max-body-bytes", type=positive_int,
                   help="largest request body accepted (default: the spec limit + 64 KiB)")  # fmt: skip
    p.add_argument("--cookie-secure", action="store_true",
                   help="mark the dashboard's session cookie Secure (behind HTTPS)")  # fmt: skip
    p.add_argument("--application-name", default=SERVE_APPLICATION_NAME, metavar="NAME",
                   help="PostgreSQL application_name of its connections (default taskq-serve; "
                   "the LISTEN connection is NAME-listen)")  # fmt: skip
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def active_tokens(args: argparse.Namespace) -> int:
    import psycopg.errors

    db = open_db(args)
    try:
        return int(db.query(db.settings.stmts.tokens.count_active()) or 0)
    except psycopg.errors.UndefinedTable:
        die(f"schema {db.schema!r} has no api_tokens table: run `taskq migrate` first")
    finally:
        db.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from taskq.server import missing_dependency

    reason = missing_dependency()
    if reason is not None:
        die(reason)
    from taskq.core.config import database_url
    from taskq.db.embedded import embedded_url

    url = database_url() or embedded_url()
    tokens = active_tokens(args)
    if tokens == 0 and not is_loopback(args.host):
        die(f"refusing to serve on {args.host}, which is not a loopback address, while no "
            "API token exists: create one with `taskq token create --name NAME --scope read`")  # fmt: skip
    from taskq.server.run import serve
    from taskq.server.state import ServeConfig

    fields: dict[str, Any] = {"url": url, "schema": args.schema, "host": args.host,
                              "port": args.port, "pool_size": args.pool_size,
                              "cookie_secure": args.cookie_secure,
                              "application_name": args.application_name}  # fmt: skip
    if args.max_body_bytes:
        fields["max_body_bytes"] = args.max_body_bytes
    if tokens == 0:
        print("taskq serve: no API token exists yet; create one with "
              "`taskq token create --name NAME --scope read|write|admin`", file=sys.stderr)  # fmt: skip
    return serve(ServeConfig(**fields), access_log=args.access_log)
