"""README.md runs as written.

Every fenced ``python``, ``sh``, ``bash`` or ``console`` block in README.md carries an
HTML comment on the line before it:

- ``<!-- file: PATH -->``: a python block written to PATH in a fresh project folder;
- ``<!-- run -->``: a shell block run there, command by command, in README order;
- ``<!-- run: background -->``: each command started in the background (a worker),
  stopped with SIGTERM at the end, when it must exit 0;
- ``<!-- not-run: reason -->``: a fragment or an install step, left alone.

A block without a marker fails the test. In ``console`` blocks, ``$ `` lines are
commands and the lines after them are output they must print, in order (other lines
may come between; whitespace runs compare equal; ``...`` matches anything; a UUID
matches any UUID and binds the README's id to the real one, so a later
``taskq show 9b2f6a4c`` runs with the real id's prefix). In ``sh`` blocks every line
is a command. ``export TASKQ_DATABASE_URL=...`` and ``export TASKQ_SCHEMA=...`` keep the
test's database and a fresh schema; other exports apply to the commands after them.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import ROOT, taskq_env
from psycopg import sql

README = ROOT / "README.md"
SHELLS = ("sh", "bash", "console")
CHECKED = ("python", *SHELLS)
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MARKER = re.compile(r"<!--\s*(file|run|not-run)\s*(?::\s*(.*?))?\s*-->")
KEPT = ("TASKQ_DATABASE_URL", "TASKQ_SCHEMA")

pytestmark = pytest.mark.faces("sync")


@dataclass
class Command:
    line: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    lang: str
    body: str
    marker: str | None  # "file", "run", "not-run" or None
    arg: str
    lineno: int

    def commands(self) -> list[Command]:
        out: list[Command] = []
        for raw in self.body.splitlines():
            if self.lang == "console":
                if raw.startswith("$ "):
                    out.append(Command(raw[2:].strip()))
                elif raw.strip() and out:
                    out[-1].expected.append(raw)
            elif raw.strip() and not raw.lstrip().startswith("#"):
                out.append(Command(raw.strip()))
        return out


def blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text``, each with the marker comment just before it."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        mk = MARKER.fullmatch(prev.strip())
        found.append(
            Block(
                lang=m.group(1),
                body="\n".join(lines[start + 1 : j]),
                marker=mk.group(1) if mk else None,
                arg=(mk.group(2) or "") if mk else "",
                lineno=start + 1,
            )
        )
        i = j + 1
    return found


def test_every_code_block_has_a_marker() -> None:
    missing = [
        f"README.md:{b.lineno} ({b.lang})"
        for b in blocks(README.read_text())
        if b.lang in CHECKED and b.marker is None
    ]
    assert not missing, "blocks without <!-- file/run/not-run --> marker: " + ", ".join(missing)
    for b in blocks(README.read_text()):
        if b.marker == "file":
            assert b.lang == "python" and b.arg, f"README.md:{b.lineno}: file needs a path"
        if b.marker == "run":
            assert b.lang in SHELLS, f"README.md:{b.lineno}: only shell blocks run"
        if b.marker == "not-run":
            assert b.arg, f"README.md:{b.lineno}: not-run needs a reason"


def line_pattern(expected: str) -> re.Pattern[str]:
    """A regex for one expected output line: UUIDs capture, ``...`` matches anything,
    any run of whitespace matches any other."""
    parts = re.split(rf"({UUID}|\.\.\.|\s+)", expected.strip())
    out = []
    for p in parts:
        if not p:
            continue
        if re.fullmatch(UUID, p):
            out.append(f"({UUID})")
        elif p == "...":
            out.append(".*")
        elif p.isspace():
            out.append(r"\s+")
        else:
            out.append(re.escape(p))
    return re.compile("".join(out))


class Session:
    """Runs the README's blocks in one project folder against one schema."""

    def __init__(self, folder: Path, url: str, schema: str) -> None:
        self.folder = folder
        self.env = taskq_env(url, schema)
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), self.env["PATH"]])
        self.ids: dict[str, str] = {}  # README's UUID -> the real one
        self.background: list[tuple[str, subprocess.Popen[str], Any]] = []
        self.outputs: list[tuple[str, str]] = []

    def substitute(self, line: str) -> str:
        for shown, real in self.ids.items():
            for n in range(len(shown), 5, -1):
                prefix = shown[:n]
                if re.search(rf"(?<![0-9a-f-]){re.escape(prefix)}(?![0-9a-f-])", line):
                    line = line.replace(prefix, real[:n])
                    break
        return line

    def export(self, line: str) -> bool:
        m = re.fullmatch(r"export\s+(\w+)=(.*)", line)
        if not m:
            return False
        name, value = m.group(1), m.group(2)
        if name not in KEPT:
            self.env[name] = shlex.split(value)[0] if value else ""
        return True

    def run(self, block: Block) -> None:
        for cmd in block.commands():
            line = self.substitute(cmd.line)
            if self.export(line):
                continue
            if block.arg == "background":
                log = tempfile.TemporaryFile("w+")
                p = subprocess.Popen(["bash", "-c", "exec " + line], cwd=self.folder,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     text=True)  # fmt: skip
                self.background.append((line, p, log))
                continue
            done = subprocess.run(["bash", "-c", line], cwd=self.folder, env=self.env,
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            where = f"README.md:{block.lineno}: `{line}`"
            assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stderr}"
            self.outputs.append((line, done.stdout))
            self.check(where, done.stdout, cmd.expected)

    def check(self, where: str, output: str, expected: list[str]) -> None:
        actual = output.splitlines()
        at = 0
        for want in expected:
            if want.strip() == "...":
                continue
            pattern = line_pattern(want)
            for k in range(at, len(actual)):
                m = pattern.fullmatch(actual[k].strip())
                if m:
                    shown = re.findall(UUID, want)
                    for readme_id, real in zip(shown, m.groups(), strict=True):
                        self.ids.setdefault(readme_id, real)
                    at = k + 1
                    break
            else:
                pytest.fail(f"{where} did not print {want!r} (in order); it printed:\n{output}")

    def stop(self) -> list[tuple[str, int, str]]:
        stopped = []
        for line, p, log in self.background:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                code = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                code = p.wait()
            log.seek(0)
            stopped.append((line, code, log.read()))
            log.close()
        return stopped


@pytest.fixture
def empty_schema(database_url: str) -> Iterator[str]:
    """A schema name nothing uses yet: the README's own ``taskq migrate`` creates it."""
    name = f"readme_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def test_readme_runs_as_written(database_url: str, empty_schema: str, tmp_path: Path) -> None:
    session = Session(tmp_path, database_url, empty_schema)
    written: list[str] = []
    try:
        for block in blocks(README.read_text()):
            if block.marker == "file":
                path = tmp_path / block.arg
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(block.body + "\n")
                written.append(block.arg)
            elif block.marker == "run":
                session.run(block)
    finally:
        stopped = session.stop()
    assert "myapp/tasks.py" in written and "myapp/produce.py" in written
    for line, code, log in stopped:
        assert code == 0, f"`{line}` exited {code} on SIGTERM:\n{log}"

    # What the README says happened, happened.
    outputs = dict(session.outputs)
    produced = outputs["python -m myapp.produce"]
    assert "{'sent_to': 'ada@example.com'}" in produced
    failed_id = re.search(rf"failed ({UUID})", produced)
    assert failed_id, produced
    shown = next(out for line, out in session.outputs if line.endswith("--json"))
    assert '"type": "ValueError"' in shown
    worker_log = stopped[0][2]
    assert "task finished" in worker_log and "task failed" in worker_log

    import taskq

    with taskq.Tasks(database_url, schema=empty_schema) as tasks:
        done = tasks.list(status=taskq.TaskStatus.FINISHED)
        bad = tasks.get(failed_id.group(1))
    assert [t.result for t in done] == [{"sent_to": "ada@example.com"}]
    assert bad.status is taskq.TaskStatus.FAILED and bad.attempts == 2
    assert [e.type for e in bad.errors] == ["ValueError", "ValueError"]
