"""Plumbing shared by the pooler and replica helpers: libpq URLs, free ports, an
unprivileged OS user when the tests run as root, child processes that never outlive
the test process, polling with a timeout."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

T = TypeVar("T")

# Tried in this order for a process that must not run as root.
UNPRIVILEGED_USERS = ("postgres", "embedded_postgres", "nobody")


def parse_url(url: str) -> dict[str, str]:
    """The libpq parameters of a URL or key=value string, values as strings."""
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def make_url(params: Mapping[str, Any]) -> str:
    """A ``postgresql://`` URI from libpq parameters. A socket directory goes in the
    query string (``?host=/dir``), as in the embedded server's URL."""
    params = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    user = params.pop("user", "")
    password = params.pop("password", "")
    dbname = params.pop("dbname", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    netloc = ""
    if user:
        netloc = quote(user, safe="")
        if password:
            netloc += ":" + quote(password, safe="")
        netloc += "@"
    query: dict[str, str] = {}
    if host and not host.startswith("/"):
        netloc += f"[{host}]" if ":" in host else host
        if port:
            netloc += f":{port}"
    else:
        if host:
            query["host"] = host
        if port:
            query["port"] = port
    query.update(params)
    url = f"postgresql://{netloc}/{quote(dbname, safe='')}"
    if query:
        url += "?" + "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
    return url


def is_socket_host(host: str | None) -> bool:
    return bool(host) and str(host).startswith("/")


def default_socket_dir() -> str:
    """Where libpq looks for a server when a URL names no host."""
    for candidate in (os.environ.get("PGHOST", ""), "/var/run/postgresql", "/tmp"):
        if candidate.startswith("/") and os.path.isdir(candidate):
            return candidate
    return "/tmp"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (callers retry if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def running_as_root() -> bool:
    return os.geteuid() == 0


def service_user(socket_dir: str | None = None) -> pwd.struct_passwd | None:
    """The OS user to run a server process as: None when we are not root (run as
    ourselves). As root: the owner of the upstream's socket directory when that is
    not root (it may be the only user allowed in, as with the embedded server's
    0700 data directory), else the first of ``UNPRIVILEGED_USERS`` that exists."""
    if not running_as_root():
        return None
    if socket_dir:
        try:
            owner = os.stat(socket_dir).st_uid
        except OSError:
            owner = 0
        if owner != 0:
            try:
                return pwd.getpwuid(owner)
            except KeyError:
                pass
    for name in UNPRIVILEGED_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(
        f"running as root and none of the users {', '.join(UNPRIVILEGED_USERS)} exists "
        "to run the server process as"
    )


def _traversable_by_all(path: Path) -> bool:
    for part in [path, *path.parents]:
        if not part.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def private_dir(prefix: str, owner: pwd.struct_passwd | None) -> Path:
    """A new 0700 temporary directory owned by ``owner`` (or by us), under a parent
    that user can traverse."""
    base = Path(tempfile.gettempdir())
    if owner is not None and not _traversable_by_all(base):
        base = Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    path.chmod(0o700)
    return path


def chown_for(path: Path, owner: pwd.struct_passwd | None) -> None:
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _pdeathsig_prefix(death_signal: signal.Signals | None) -> list[str]:
    """``setpriv --pdeathsig SIG --``: the child gets ``death_signal`` if the thread
    that started it dies, so a killed test run leaves no server behind. Only from
    the main thread (a worker thread that ends would take the server with it)."""
    if death_signal is None or threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    return [setpriv, "--pdeathsig", death_signal.name.removeprefix("SIG"), "--"]


def spawn(
    argv: list[str],
    *,
    user: pwd.struct_passwd | None,
    log_path: Path,
    death_signal: signal.Signals | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a child in its own session, as ``user`` when given, with its
    output appended to ``log_path``."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    with open(log_path, "ab") as log:
        chown_for(log_path, user)
        return subprocess.Popen(
            [*_pdeathsig_prefix(death_signal), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            **kwargs,
        )


def run_as(
    argv: list[str],
    *,
    user: pwd.struct_passwd | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion as ``user`` (when given), output captured."""
    kwargs: dict[str, Any] = {}
    if user is not None:
        kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        **kwargs,
    )


def stop_process(
    proc: subprocess.Popen[bytes], first_signal: signal.Signals, timeout: float = 15.0
) -> None:
    """Stop a child we started: ``first_signal``, then SIGKILL to its whole process
    group (its own session, so only what it started) if it has not exited within
    ``timeout``. Returns once the child has been reaped."""
    if proc.poll() is None:
        try:
            proc.send_signal(first_signal)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


# libpq and server variables that would steer a tool we start somewhere else.
_STEERING = {"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGDATA", "PGOPTIONS"}
_STEERING |= {"PGSERVICE", "PGSERVICEFILE", "PGAPPNAME", "PGTARGETSESSIONATTRS"}


def env_without_pg() -> dict[str, str]:
    """Our environment without the ``PG*`` variables that pick a server, user,
    database or options, so a stray PGHOST or PGPORT steers nothing we start
    (PGPASSWORD and the SSL ones stay)."""
    return {k: v for k, v in os.environ.items() if k not in _STEERING}


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], str | None] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; ``TimeoutError`` naming
    ``what`` when the time is up. ``alive`` returns a reason to give up early (a
    process that exited), raised as ``RuntimeError``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if alive is not None:
            reason = alive()
            if reason:
                raise RuntimeError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
