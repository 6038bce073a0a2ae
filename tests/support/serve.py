"""A real ``taskq serve`` for the tests: a subprocess on a free loopback port (it binds
port 0 and says which port it got), plain HTTP helpers on ``http.client``, tokens of
each scope, and an event-stream reader."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskq.db import Database
from taskq.server import tokens

ROOT = Path(__file__).resolve().parent.parent.parent
_LISTENING = re.compile(r"listening on http://([^/]+)/")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", "replace")


class Server:
    """``taskq serve --port 0`` on ``url``/``schema``; ``stop()`` it (SIGTERM)."""

    def __init__(self, url: str, schema: str, *args: str, **env: str) -> None:
        environ = dict(os.environ, TASKQ_DATABASE_URL=url, TASKQ_SCHEMA=schema,
                       PYTHONUNBUFFERED="1", **env)  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskq.cli", "serve", "--port", "0", *args],
            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stderr: list[str] = []
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if (m := _LISTENING.search(line)) or not line:
                break
        if not (m := _LISTENING.search(line)):
            self.proc.kill()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(f"taskq serve did not start: {line!r} {err}")
        self.address = m.group(1)
        self.host, _, port = self.address.rpartition(":")
        self.port = int(port)
        self.base = f"http://{self.address}"
        threading.Thread(target=self._drain, daemon=True).start()
        self.wait_healthy()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail("taskq serve never became healthy")

    def connection(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method: str, path: str, *, token: str | None = None, body: Any = None,
                raw: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = 30) -> Reply:  # fmt: skip
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def events(self, path: str, token: str, timeout: float = 30) -> Iterator[dict[str, Any]]:
        """The events of an event stream (``data`` decoded as JSON; ``event`` kept), until
        the server closes it."""
        conn = self.connection(timeout)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}",
                                               "Accept": "text/event-stream"})  # fmt: skip
            resp = conn.getresponse()
            assert resp.status == 200, (resp.status, resp.read())
            assert resp.getheader("content-type", "").startswith("text/event-stream")
            event: dict[str, str] = {}
            while True:
                line = resp.readline()
                if not line:
                    return
                text = line.decode().rstrip("\r\n")
                if text == "":
                    if "data" in event:
                        yield {"event": event.get("event", "message"),
                               "data": json.loads(event["data"])}  # fmt: skip
                    event = {}
                elif not text.startswith(":"):
                    key, _, value = text.partition(":")
                    event[key] = value.removeprefix(" ")
        finally:
            conn.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def make_token(url: str, schema: str, scope: str, name: str | None = None) -> str:
    import uuid

    db = Database(url, schema, max_size=1)
    try:
        token, _ = db.run(tokens.create(db.settings.stmts, name or f"{scope}-{uuid.uuid4().hex[:6]}",
                                        scope))  # fmt: skip
        return token
    finally:
        db.close()


# ---- Debian's chromium for the browser test ---------------------------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip


def chromium() -> str:
    """The path of Debian's chromium, installed with apt when this process can (root
    and apt-get); otherwise the test is skipped with the reason."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("chromium is not installed and this process cannot install it "
                    "(needs root and apt-get): apt-get install chromium")  # fmt: skip
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
           "-o", "DPkg::Lock::Timeout=120", "chromium"]  # fmt: skip
    ok = subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode == 0
    if not ok:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        ok = subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode == 0
    found = shutil.which("chromium")
    if not ok or not found:
        pytest.skip("chromium is not installed and `apt-get install chromium` failed")
    return found


def server_metric_names() -> set[str]:
    """Every sample name ``taskq serve`` exports on /metrics (its request metrics, each
    observed once); empty without the server extra."""
    try:
        from prometheus_client import CollectorRegistry

        from taskq.server.asgi import RequestMetrics
    except ImportError:
        return set()
    registry = CollectorRegistry()
    m = RequestMetrics(lambda *a: None, registry)  # type: ignore[arg-type, return-value]
    m.requests.labels("GET", "/x", "200").inc()
    m.latency.labels("GET", "/x", "200").observe(0.01)
    return {s.name for metric in registry.collect() for s in metric.samples}


class DbProxy:
    """A loopback TCP proxy in front of the test database that can be cut (every
    connection closed, new ones refused) and restored on the same port."""

    def __init__(self, url: str) -> None:
        import socket

        from support._proc import make_url, parse_url

        params = parse_url(url)
        host, port = params.get("host", "localhost"), params.get("port", "5432")
        if host.startswith("/"):
            self.target: Any = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            self.target = (socket.AF_INET, (host, int(port)))
        self._pairs: list[Any] = []
        self._lock = threading.Lock()
        self.port = 0
        self._listen()
        self.url = make_url({**params, "host": "127.0.0.1", "port": str(self.port)})

    def _listen(self) -> None:
        import socket

        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: Any) -> None:
        import socket

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.socket(self.target[0], socket.SOCK_STREAM)
            try:
                server.connect(self.target[1])
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        import socket

        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for s in pairs:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self._listen()
