"""Guard tests for the shape of the code: they fail when a design rule is broken.

- Every SQL statement in ``taskq/sql/*.sql`` is exposed by exactly one function (marked
  ``@statement``, named like the statement) of its file's statements class, and every
  such function has its statement.
- Imports run one way: a lower layer never imports a higher one.
- Only the executors (and the LISTEN connections, and the DDL helpers that migrations
  run) send SQL to a connection.
- No module is much past 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from taskq.sql import STATEMENT_CLASSES
from taskq.sql.blocks import load, statements

PACKAGE = Path(__file__).resolve().parent.parent / "taskq"

# Lower layers first. A module may import its own layer and those before it.
LAYERS: list[tuple[str, ...]] = [
    ("taskq.core",),
    ("taskq.sql",),
    ("taskq.actions",),
    ("taskq.db",),
    ("taskq.clients", "taskq.queuer", "taskq.dequeuer", "taskq.tasks", "taskq.scheduler",
     "taskq.registry", "taskq.aio"),
    ("taskq.ops",),
    ("taskq.services",),
    ("taskq.worker",),
    ("taskq.server", "taskq.contrib", "taskq.testing"),
    ("taskq.cli", "taskq.tools"),
]  # fmt: skip


def layer_of(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def runtime_imports(path: Path) -> list[str]:
    """Modules imported by ``path``, leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                skipped.add(id(inner))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
    return [m for m in found if m == "taskq" or m.startswith("taskq.")]


@pytest.mark.parametrize("cls", STATEMENT_CLASSES, ids=lambda c: c.FILE)
def test_every_statement_has_exactly_one_function_and_every_function_a_statement(
    cls: type,
) -> None:
    names = set(statements(cls.FILE))
    marked = {n for n in dir(cls) if getattr(getattr(cls, n), "__statement__", False)}
    assert names - marked == set(), f"statements of {cls.FILE} with no function"
    assert marked - names == set(), f"functions of {cls.__name__} with no statement"


def test_every_sql_file_has_a_statements_class() -> None:
    files = {p.name for p in (PACKAGE / "sql").glob("*.sql")}
    assert files == {c.FILE for c in STATEMENT_CLASSES}
    for name in files:
        assert load(name), f"{name} has no blocks"


def test_imports_never_go_from_a_lower_layer_to_a_higher_one() -> None:
    wrong = []
    for module, path in modules():
        own = layer_of(module)
        if own is None:
            assert module == "taskq", f"{module} belongs to no layer"
            continue
        for imported in runtime_imports(path):
            rank = layer_of(imported)
            if rank is not None and rank > own:
                wrong.append(f"{module} imports {imported}")
    assert wrong == []


SENDS_SQL = {
    "taskq.db.executor",  # runs every Query and plan
    "taskq.db.listen",  # LISTEN and its liveness check, from taskq/sql/catalog.sql
    "taskq.db.alisten",
    "taskq.db.ddl",  # reference columns, composed with psycopg.sql, run by migrations
    "taskq.db.migrate",
}


def test_only_the_executors_send_sql() -> None:
    senders = set()
    for module, path in modules():
        if module.startswith("taskq.tools"):
            continue  # the benchmark measures the database itself, outside the core
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany"):
                senders.add(module)
    assert senders <= SENDS_SQL, senders - SENDS_SQL


def test_no_module_is_much_past_400_lines() -> None:
    long = {m: n for m, p in modules() if (n := len(p.read_text().splitlines())) > 420}
    assert long == {}
