"""Running the application under uvicorn, with taskq's logging and a clear first line."""

from __future__ import annotations

import logging
import signal
import socket
import sys

from taskq.server.state import ServeConfig


def serve(config: ServeConfig, *, access_log: bool = False) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit status."""
    import uvicorn

    from taskq.server.app import create_app

    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    # IPPROTO_TCP named, so the event loop knows these are TCP sockets and turns Nagle's
    # algorithm off on each connection (otherwise a response written in two parts waits
    # for the client's delayed ACK: 40 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((config.host.strip("[]"), config.port))
        sock.listen(2048)  # clients that come while the app starts wait, not refused
    except OSError as e:
        print(f"taskq: cannot listen on {config.host}:{config.port}: {e.strerror or e}",
              file=sys.stderr)  # fmt: skip
        return 1
    port = sock.getsockname()[1]
    host = f"[{config.host.strip('[]')}]" if family == socket.AF_INET6 else config.host
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=access_log,
            lifespan="on",
            timeout_graceful_shutdown=5,
            server_header=False,
            loop="auto",
            http="auto",
        )  # fmt: skip
    )
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    print(f"taskq serve: listening on http://{host}:{port}/ (API /api/v1, dashboard /)",
          flush=True)  # fmt: skip
    # uvicorn handles SIGINT/SIGTERM with a graceful shutdown, then raises the signal
    # again for the handler it found: make that one quiet, so a clean stop exits 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run(sockets=[sock])  # on uvloop when it is installed
    return 0
