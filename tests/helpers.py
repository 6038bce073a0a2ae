"""Helpers shared by the tests (import from tests: ``from helpers import ...``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(interval)


def taskq_env(url: str, schema: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TASKQ_DATABASE_URL=url, TASKQ_SCHEMA=schema, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def taskq_cmd(*args: str) -> list[str]:
    """The ``taskq`` command line, run with this interpreter."""
    return [sys.executable, "-m", "taskq.cli", *args]


def run_taskq(
    url: str, schema: str, *args: str, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        taskq_cmd(*args),
        env=taskq_env(url, schema, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
