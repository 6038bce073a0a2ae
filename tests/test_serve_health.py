"""`/healthz` answers 503 while the database is unreachable and 200 again once it is
back; API requests meanwhile get 503 JSON, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import wait_for
from support.serve import DbProxy, Server, make_token

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def proxy(database_url: str) -> Iterator[DbProxy]:
    p = DbProxy(database_url)
    yield p
    p.cut()


@pytest.mark.timeout(300)
def test_healthz_is_503_without_the_database_and_200_with_it(
    proxy: DbProxy, database_url: str, schema: str
) -> None:
    token = make_token(database_url, schema, "read")
    server = Server(proxy.url, schema)
    try:
        assert server.request("GET", "/healthz").status == 200
        proxy.cut()
        r = wait_for(lambda: (x := server.request("GET", "/healthz")).status == 503 and x,
                     timeout=30, what="503 from /healthz")  # fmt: skip
        assert r.json["error"]["code"] == "unavailable"
        r = server.request("GET", "/api/v1/queues", token=token, timeout=60)
        assert r.status == 503 and r.json["error"]["code"] == "unavailable"
        proxy.restore()
        wait_for(lambda: server.request("GET", "/healthz").status == 200, timeout=60,
                 what="200 from /healthz once the database is back")  # fmt: skip
        assert server.request("GET", "/api/v1/queues", token=token).status == 200
    finally:
        assert server.stop() == 0
    assert not any("Traceback" in line for line in server.stderr), "".join(server.stderr)
