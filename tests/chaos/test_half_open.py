"""A half-open connection: a loopback proxy in front of the cluster stops forwarding
on every established connection without closing it. The worker's kernel still gets
ACKs, so keepalives see nothing wrong; only taskq's own bound on how long it waits for
an answer (the connection's ``tcp_user_timeout``) can notice. The worker must notice
within that time, carry on over fresh connections, and still stop on SIGTERM."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from chaoslib import Cluster, Spawn, StallingProxy, wait_registered, worker_args

import taskq

TIMEOUT_MS = 3000
"""The configured bound, given in the worker's URL (the default is 30000)."""

SLACK = 3.0
"""Claim poll (1 s), claim backoff, and a busy machine (seconds)."""


@pytest.fixture
def proxy(cluster: Cluster) -> Iterator[StallingProxy]:
    p = StallingProxy(cluster.socket_path)
    yield p
    p.close()


def test_half_open_connection_detected_within_timeout_and_sigterm_still_stops(
    cluster: Cluster, schema: str, spawn: Spawn, proxy: StallingProxy
) -> None:
    url = proxy.url(
        tcp_user_timeout=str(TIMEOUT_MS), keepalives_idle="1", keepalives_interval="1",
        keepalives_count="2",
    )  # fmt: skip
    w = spawn(*worker_args(concurrency=2), url=url)
    wait_registered(cluster, schema, w)
    limit = TIMEOUT_MS / 1000
    with (
        taskq.Queuer(cluster.url, schema=schema) as q,
        taskq.Tasks(cluster.url, schema=schema) as tasks,
    ):
        warm = q.enqueue(queue="half-open", type="noop")
        assert tasks.wait(warm.id, timeout=10).status == taskq.TaskStatus.FINISHED

        # Every connection the worker holds goes silent; a task arrives meanwhile.
        assert proxy.stall() >= 2  # its pool and its LISTEN connection at least
        stalled_at = time.monotonic()
        task = q.enqueue(queue="half-open", type="noop")
        done = tasks.wait(task.id, timeout=2 * limit + SLACK + 20)
        picked_up = time.monotonic() - stalled_at
        assert done.status == taskq.TaskStatus.FINISHED
        assert picked_up <= 2 * limit + SLACK, picked_up
        log = w.log()
        assert f"no answer from the server for {limit:g} s" in log, log

    # Stall everything again and stop it at once, while its threads wait on silent
    # connections: it still exits 0, within the bound and the shutdown's own waits.
    proxy.stall()
    time.sleep(0.5)
    started = time.monotonic()
    assert w.stop(timeout=60) == 0, w.log()
    took = time.monotonic() - started
    print(f"picked up {picked_up:.1f} s after the stall; stopped {took:.1f} s after SIGTERM")
    assert took <= 2 * limit + SLACK, w.log()
