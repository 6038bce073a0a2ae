"""Logging belongs to the application: `taskq worker` keeps the handlers the
application's module set up (they get taskq's records and the application's own),
`--log-config FILE` (JSON, YAML or INI, as the standard library reads them) takes full
control, and taskq's own stderr lines stay the default (tests/test_logs.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, taskq_cmd, taskq_env, wait_for

import taskq

# The subject is the command line; taskq objects only look at it, so they keep to
# the synchronous face (the API modules cover the asyncio face).
pytestmark = pytest.mark.faces("sync")

APP = """
import logging
import os

import taskq

if os.environ.get("APP_LOG"):  # the application's own logging set-up
    logging.basicConfig(filename=os.environ["APP_LOG"], level=logging.INFO,
                        format="APP %(levelname)s %(name)s: %(message)s")
if os.environ.get("APP_DICTCONFIG_LOG"):  # the same with dictConfig, as Django does it
    import logging.config

    logging.config.dictConfig({  # disable_existing_loggers left at its default, True
        "version": 1,
        "formatters": {"app": {"format": "DICT %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "formatter": "app",
                              "filename": os.environ["APP_DICTCONFIG_LOG"]}},
        "root": {"level": "INFO", "handlers": ["file"]},
    })
if os.environ.get("APP_IMPORTED"):
    open(os.environ["APP_IMPORTED"], "w").close()
log = logging.getLogger("logapp")
log.info("logapp imported")
registry = taskq.Registry()


@registry.task("hello")
def hello(ctx):
    log.info("hello handler ran for %s", ctx.task.id)
    return "hi"
"""


class App:
    """A user's module in a folder of its own, and the worker processes run on it."""

    def __init__(self, folder: Path, url: str, schema: str) -> None:
        self.folder = folder
        self.url = url
        self.schema = schema
        (folder / "logapp.py").write_text(APP)
        self.procs: list[subprocess.Popen[str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        extra.setdefault("PYTHONPATH", os.pathsep.join([str(self.folder), str(ROOT / "tests")]))
        return taskq_env(self.url, self.schema, **extra)

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(taskq_cmd(*args), env=self.env(**extra), cwd=self.folder,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def worker_runs_a_task(self, *args: str, **extra: str) -> tuple[str, str]:
        """Start `taskq worker logapp:registry ARGS`, run one task through it, stop it
        with SIGTERM; returns the task's id and what the worker wrote on stderr."""
        queue = f"logs-{uuid.uuid4().hex[:8]}"
        err = self.folder / f"{queue}.stderr"
        with err.open("w") as stderr:
            proc = subprocess.Popen(
                taskq_cmd("worker", "logapp:registry", "--queue", queue, *args),
                env=self.env(**extra), cwd=self.folder, stdout=stderr, stderr=stderr, text=True,
            )  # fmt: skip
        self.procs.append(proc)
        with (
            taskq.Queuer(self.url, schema=self.schema) as q,
            taskq.Tasks(self.url, schema=self.schema) as t,
        ):
            task = q.enqueue(queue=queue, type="hello")
            assert t.wait(task.id, timeout=60).result == "hi", err.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, err.read_text()
        return task.id, err.read_text()

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def app(database_url: str, schema: str, tmp_path: Path) -> Iterator[App]:
    a = App(tmp_path, database_url, schema)
    yield a
    a.close()


def assert_has_both(text: str, task_id: str) -> None:
    """taskq's records of the task and the application's own are all there."""
    assert "logapp imported" in text, text
    assert f"hello handler ran for {task_id}" in text, text
    assert "task started" in text and "task finished" in text, text
    assert "taskq.worker" in text and "started" in text, text


def test_handlers_the_application_set_up_keep_getting_taskqs_records(app: App) -> None:
    log = app.folder / "app.log"
    task_id, stderr = app.worker_runs_a_task(APP_LOG=str(log))
    text = log.read_text()
    assert_has_both(text, task_id)
    lines = text.splitlines()
    assert any(ln.startswith("APP INFO taskq.events: task finished") for ln in lines), text
    assert "task finished" not in stderr  # not also on taskq's own stderr handler


def test_taskqs_loggers_stay_enabled_under_an_applications_dictconfig(app: App) -> None:
    log = app.folder / "dict.log"
    task_id, stderr = app.worker_runs_a_task(APP_DICTCONFIG_LOG=str(log))
    text = log.read_text()
    assert_has_both(text, task_id)
    assert "DICT INFO taskq.events: task finished" in text, text
    assert "task finished" not in stderr


def test_log_level_sets_taskqs_loggers_under_the_applications_logging(app: App) -> None:
    log = app.folder / "app.log"
    task_id, stderr = app.worker_runs_a_task("--log-level", "WARNING", "--log-format", "json",
                                             APP_LOG=str(log))  # fmt: skip
    text = log.read_text()
    assert f"hello handler ran for {task_id}" in text  # the application's level is its own
    assert "task finished" not in text  # taskq's loggers at WARNING
    assert "--log-format json is not used: the application configured logging" in text


def test_log_config_json(app: App) -> None:
    out = app.folder / "json.log"
    config = {
        "version": 1,
        "formatters": {"j": {"()": "taskq.ops.logs.JsonFormatter"}},
        "handlers": {"f": {"class": "logging.FileHandler", "filename": str(out),
                           "formatter": "j"}},
        "root": {"level": "INFO", "handlers": ["f"]},
    }  # fmt: skip
    (app.folder / "logging.json").write_text(json.dumps(config))
    task_id, stderr = app.worker_runs_a_task("--log-config", "logging.json")
    records = [json.loads(line) for line in out.read_text().splitlines()]
    finished = [r for r in records if r["msg"] == "task finished"]
    assert finished and finished[0]["task_id"] == task_id and finished[0]["ts"].endswith("Z")
    assert any(r["logger"] == "logapp" and task_id in r["msg"] for r in records)
    assert "task finished" not in stderr


def test_log_config_ini(app: App) -> None:
    out = app.folder / "ini.log"
    (app.folder / "logging.ini").write_text(textwrap.dedent(f"""\
        [loggers]
        keys=root

        [handlers]
        keys=file

        [formatters]
        keys=plain

        [logger_root]
        level=INFO
        handlers=file

        [handler_file]
        class=FileHandler
        args=({str(out)!r},)
        formatter=plain

        [formatter_plain]
        class=taskq.ops.logs.TextFormatter
        """))  # fmt: skip
    task_id, stderr = app.worker_runs_a_task("--log-config", "logging.ini")
    text = out.read_text()
    assert f"INFO taskq.events: task finished task_id={task_id} " in text, text
    assert f"INFO logapp: hello handler ran for {task_id}" in text
    assert "task finished" not in stderr


def test_log_config_yaml(app: App) -> None:
    pytest.importorskip("yaml")
    out = app.folder / "yaml.log"
    (app.folder / "logging.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        formatters:
          plain: {{format: "YAML %(name)s: %(message)s"}}
        handlers:
          file: {{class: logging.FileHandler, filename: {str(out)!r}, formatter: plain}}
        root: {{level: INFO, handlers: [file]}}
        """))  # fmt: skip
    task_id, _ = app.worker_runs_a_task("--log-config", "logging.yaml")
    assert "YAML taskq.events: task finished" in out.read_text()
    assert f"YAML logapp: hello handler ran for {task_id}" in out.read_text()


def test_a_bad_log_config_is_one_line_before_the_application_is_imported(app: App) -> None:
    (app.folder / "broken.json").write_text('{"version": 1')
    (app.folder / "nohandler.json").write_text(json.dumps(
        {"version": 1, "handlers": {"f": {"class": "logging.FileHandler",
                                          "filename": "/nonexistent/dir/x.log"}},
         "root": {"handlers": ["f"]}}))  # fmt: skip
    (app.folder / "notyaml.yaml").write_text("version: [1\n")
    imported = app.folder / "imported"
    for args, says in (
        (["--log-config", "missing.json"], "cannot read it"),
        (["--log-config", "broken.json"], "not valid JSON"),
        (["--log-config", "notyaml.yaml"], "not valid YAML"),
        (["--log-config", "nohandler.json", "--log-format", "json"], "cannot be combined"),
    ):
        r = app.run("worker", "logapp:registry", *args, APP_IMPORTED=str(imported))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and says in r.stderr, r.stderr
        assert not imported.exists(), args
    # The standard library refuses it only when it applies it, after the import.
    r = app.run("worker", "logapp:registry", "--log-config", "nohandler.json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Unable to configure handler 'f'" in r.stderr and "/nonexistent/dir" in r.stderr


def test_a_yaml_log_config_without_pyyaml_is_one_line(app: App) -> None:
    shadow = app.folder / "noyaml"
    shadow.mkdir()
    (shadow / "yaml.py").write_text("raise ImportError('No module named yaml')\n")
    (app.folder / "logging.yaml").write_text("version: 1\n")
    path = os.pathsep.join([str(shadow), str(app.folder), str(ROOT / "tests")])
    r = app.run("worker", "logapp:registry", "--log-config", "logging.yaml", PYTHONPATH=path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "reading YAML needs PyYAML (pip install 'taskq[yaml]')" in r.stderr


def test_scheduler_log_config(app: App) -> None:
    out = app.folder / "scheduler.log"
    config = {"version": 1,
              "handlers": {"f": {"class": "logging.FileHandler", "filename": str(out)}},
              "loggers": {"taskq": {"level": "INFO", "handlers": ["f"]}}}  # fmt: skip
    (app.folder / "logging.json").write_text(json.dumps(config))
    with (app.folder / "stderr").open("w") as stderr:
        proc = subprocess.Popen(taskq_cmd("scheduler", "--log-config", "logging.json"),
                                env=app.env(), cwd=app.folder, stdout=stderr, stderr=stderr)  # fmt: skip
    app.procs.append(proc)  # type: ignore[arg-type]

    def started() -> Any:
        return out.exists() and "scheduler started" in out.read_text()

    wait_for(started, timeout=60, what="the scheduler's first line in its log file")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "scheduler stopping" in out.read_text()
    assert "scheduler started" not in (app.folder / "stderr").read_text()


def test_default_logs_are_taskqs_lines_on_stderr_with_iso_times(app: App) -> None:
    task_id, stderr = app.worker_runs_a_task()
    finished = [ln for ln in stderr.splitlines() if f"task finished task_id={task_id}" in ln]
    assert len(finished) == 1, stderr
    stamp = finished[0].split(" ", 1)[0]
    assert len(stamp) == len("2026-03-01T12:00:05.123Z") and stamp.endswith("Z"), stamp
    assert f"INFO logapp: hello handler ran for {task_id}" in stderr  # the app's own, too
