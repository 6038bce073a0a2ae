"""``taskq embedded status|stop``: the PostgreSQL server taskq starts when
TASKQ_DATABASE_URL is unset (``taskq demo``, and every command then)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from taskq.cli.common import die
from taskq.cli.output import print_json
from taskq.core.config import ENV_URL


def register(sub: Any) -> None:
    p = sub.add_parser(
        "embedded",
        help="status or stop of the embedded PostgreSQL",
        description="The embedded PostgreSQL runs when TASKQ_DATABASE_URL is unset: "
        "started by the first command that needs it, it keeps running for the next ones. "
        "It listens on a Unix socket only.",
    )
    esub = p.add_subparsers(dest="embedded_command", metavar="ACTION", parser_class=type(p))
    esub.required = True
    for name, what, func in (
        ("status", "say whether it runs, where its data is and its URL", cmd_status),
        ("stop", "stop it (its data stays; the next command starts it again)", cmd_stop),
    ):
        c = esub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        c.add_argument("--data-dir", type=Path, metavar="DIR",
                       help="its data folder (default: $TASKQ_EMBEDDED_DIR, else a folder "
                       "of this user's, printed by status)")  # fmt: skip
        c.add_argument("--json", action="store_true", help="print the status as JSON")
        c.set_defaults(func=func, uses_database=False)


def _status(data_dir: Path | None) -> dict[str, Any]:
    from taskq.db.embedded import data_dir as default_dir
    from taskq.db.embedded import running_url

    folder = (data_dir or default_dir()).expanduser().resolve()
    url = running_url(folder)
    return {
        "running": url is not None,
        "data_dir": str(folder),
        "initialised": (folder / "PG_VERSION").exists(),
        "url": url,
        "used": not os.environ.get(ENV_URL),
    }


def _say(status: dict[str, Any]) -> str:
    if status["running"]:
        line = f"running, data in {status['data_dir']}, URL {status['url']}"
    elif status["initialised"]:
        line = f"not running, data in {status['data_dir']}"
    else:
        line = f"not running, no data yet (it would go in {status['data_dir']})"
    if not status["used"]:
        line += f" (not used: {ENV_URL} is set)"
    return line


def cmd_status(args: argparse.Namespace) -> int:
    status = _status(args.data_dir)
    print_json(status) if args.json else print(_say(status))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from taskq.db.embedded import stop

    before = _status(args.data_dir)
    if before["running"]:
        stop(Path(before["data_dir"]))
    after = _status(args.data_dir)
    if after["running"]:
        die(f"the embedded PostgreSQL with data in {after['data_dir']} is still running")
    if args.json:
        print_json({**after, "stopped": before["running"] and not after["running"]})
    elif before["running"]:
        print(f"stopped the embedded PostgreSQL (data in {after['data_dir']})")
    else:
        print(f"the embedded PostgreSQL was not running ({_say(after)})")
    return 0
