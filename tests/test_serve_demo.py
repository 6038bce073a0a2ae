"""`taskq demo` starts the dashboard too and prints its address with a ready token,
which it revokes when it ends."""

from __future__ import annotations

import json
import re

import pytest
from helpers import run_taskq

pytest.importorskip("fastapi")


@pytest.mark.timeout(300)
def test_demo_prints_a_dashboard_link_with_a_token(database_url: str, fresh_schema: str) -> None:
    r = run_taskq(database_url, fresh_schema, "demo", "--port", "0", "--timeout", "90",
                  timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/)login#token=(taskq_\S+)", r.stdout)
    assert m, r.stdout
    assert "All sample tasks are done" in r.stdout
    active = json.loads(run_taskq(database_url, fresh_schema, "token", "list", "--json").stdout)
    assert active == []  # the demo's token was revoked when it ended
