"""``taskq bench``: a smoke test (no speed assertions) and its flag checking."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from helpers import run_taskq


def _positive(value: Any, where: str) -> None:
    assert isinstance(value, int | float) and value > 0, f"{where} = {value!r}"


@pytest.mark.timeout(240)
def test_bench_quick_json(database_url: str) -> None:
    r = run_taskq(database_url, "taskq", "bench", "--quick", "--json", timeout=220)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["schema"].startswith("taskq_bench_")
    modes = out["modes"]
    assert set(modes) == {"enqueue", "burndown", "finished", "stale", "latency", "vacuum"}

    for key in ("single", "batched"):
        _positive(modes["enqueue"][key]["tasks_per_s"], f"enqueue.{key}")

    drains = {
        "burndown": modes["burndown"],
        "finished": modes["finished"]["burndown"],
        "finished.empty": modes["finished"]["empty_burndown"],
        "stale": modes["stale"]["burndown"],
        "vacuum.without": modes["vacuum"]["without"],
        "vacuum.with": modes["vacuum"]["with"],
        "vacuum.after": modes["vacuum"]["after"],
    }
    for name, d in drains.items():
        for key in ("tasks_per_s", "steady_tasks_per_s", "elapsed_s", "enqueue_tasks_per_s"):
            _positive(d[key], f"{name}.{key}")
        assert d["tasks"] == out["config"]["tasks"]
        for when in ("before", "after"):
            sizes = d["sizes"][when]
            for key in ("table_bytes", "index_bytes", "total_bytes"):
                _positive(sizes[key], f"{name}.sizes.{when}.{key}")
            assert sizes["dead_tuples"] >= 0 and sizes["live_tuples"] >= 0

    for mode in ("finished", "stale"):
        f = modes[mode]
        assert f["finished_rows"] == out["config"]["finished"]
        for key in ("tasks_per_s", "empty_tasks_per_s", "ratio"):
            _positive(f[key], f"{mode}.{key}")
    # the stale burn-down's planner statistics predate its burst: no waiting task in them
    m = out["config"]["finished"]
    assert modes["stale"]["burndown"]["sizes"]["before"]["planner_rows"] == m
    assert modes["finished"]["burndown"]["sizes"]["before"]["planner_rows"] > m

    lat = modes["latency"]
    _positive(lat["achieved_rate"], "latency.achieved_rate")
    assert lat["tasks"] == round(out["config"]["rate"] * out["config"]["duration"])
    for side in ("handler", "database"):
        for key in ("p50_ms", "p95_ms", "p99_ms"):
            _positive(lat[side][key], f"latency.{side}.{key}")
        assert lat[side]["p50_ms"] <= lat[side]["p95_ms"] <= lat[side]["p99_ms"]

    v = modes["vacuum"]
    for key in ("with_ratio", "after_ratio", "held_s"):
        _positive(v[key], f"vacuum.{key}")

    # the bench's schema is gone
    with psycopg.connect(database_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (out["schema"],)
        ).fetchone()
    assert left == (0,)


def test_bench_async_enqueue_measures_both_faces_in_turn(database_url: str) -> None:
    r = run_taskq(database_url, "taskq", "bench", "--quick", "--modes", "enqueue", "--async",
                  "--tasks", "200", "--json", timeout=220)  # fmt: skip
    assert r.returncode == 0, r.stderr
    e = json.loads(r.stdout)["modes"]["enqueue"]
    assert e["rounds"] == 3
    for key in ("sync_single", "async_single", "sync_batched", "async_batched"):
        assert len(e["tasks_per_s"][key]) == 3
        _positive(e["median_tasks_per_s"][key], key)
    for kind in ("single", "batched"):
        _positive(e[f"async_over_sync_{kind}"], kind)
    text = run_taskq(database_url, "taskq", "bench", "--quick", "--modes", "enqueue", "--async",
                     "--tasks", "50", timeout=220)  # fmt: skip
    assert text.returncode == 0 and "median of 3" in text.stdout and "async" in text.stdout


def test_bench_burndown_with_prefetching_workers(database_url: str) -> None:
    r = run_taskq(database_url, "taskq", "bench", "--quick", "--modes", "burndown",
                  "--prefetch", "--json", timeout=220)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["config"]["prefetch"] is True
    _positive(out["modes"]["burndown"]["tasks_per_s"], "burndown")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "0"], "--tasks"),
        (["--workers", "many"], "--workers"),
        (["--rate", "-5"], "--rate"),
        (["--modes", "burndown,warp"], "unknown mode 'warp'"),
        (["--finished", "-1"], "--finished"),
    ],
)
def test_bench_bad_flags(database_url: str, args: list[str], message: str) -> None:
    r = run_taskq(database_url, "taskq", "bench", *args, timeout=30)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stdout == ""
