"""Loading ``taskq/sql/*.sql``: named statements and fragments, typed ``LiteralString``.

A file is a sequence of blocks, each starting with ``-- name: NAME`` (a statement) or
``-- fragment: NAME`` (a piece composed into statements), then a comment line saying
what it is for. Comment lines are dropped from the text. The files ship inside the
package; nothing else is ever read as SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import LiteralString

from psycopg import sql

_BLOCK = re.compile(r"^-- (name|fragment): (\w+)\n(.*?)(?=^-- (?:name|fragment): |\Z)", re.S | re.M)


@dataclass(frozen=True, slots=True)
class Block:
    name: str
    fragment: bool
    text: LiteralString
    purpose: str


@cache
def load(filename: str) -> dict[str, Block]:
    """The blocks of ``taskq/sql/<filename>``, in file order."""
    raw = resources.files("taskq").joinpath("sql", filename).read_text("utf-8")
    blocks: dict[str, Block] = {}
    for kind, name, body in _BLOCK.findall(raw):
        lines = body.splitlines()
        comments = [ln.lstrip()[2:].strip() for ln in lines if ln.lstrip().startswith("--")]
        code = "\n".join(ln for ln in lines if not ln.lstrip().startswith("--"))
        text: LiteralString = code.strip().rstrip(";")
        if name in blocks:
            raise ValueError(f"{filename}: block {name!r} is defined twice")
        blocks[name] = Block(name, kind == "fragment", text, comments[0] if comments else "")
    return blocks


def statements(filename: str) -> list[str]:
    """The statement (not fragment) names of a file."""
    return [b.name for b in load(filename).values() if not b.fragment]


def render(template: LiteralString, **parts: sql.Composable) -> LiteralString:
    """``template`` with its ``{name}`` parts composed in (identifiers quoted by
    psycopg.sql, fragments as given), as the query text to send."""
    text: LiteralString = sql.SQL(template).format(**parts).as_string(None)
    return text


def fragment(text: LiteralString) -> sql.SQL:
    """A rendered fragment, to compose into statements."""
    return sql.SQL(text)
