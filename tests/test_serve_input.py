"""`taskq serve` and bad input: malformed JSON is 400, a body over the limit 413
before it is read, refusals 422, unknown query parameters 422, and nothing a client
sends gets a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.serve import Reply, Server, make_token

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def server(database_url: str, schema: str) -> Iterator[Server]:
    s = Server(database_url, schema)
    yield s
    assert s.stop() == 0
    assert not any("Traceback" in line for line in s.stderr), "".join(s.stderr)


@pytest.fixture(scope="module")
def read(database_url: str, schema: str) -> str:
    return make_token(database_url, schema, "read")


@pytest.fixture(scope="module")
def write(database_url: str, schema: str) -> str:
    return make_token(database_url, schema, "write")


def error_of(reply: Reply) -> tuple[str, str]:
    body = reply.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return body["error"]["code"], body["error"]["message"]


def test_naive_and_unreadable_times_are_refused(server: Server, write: str) -> None:
    for run_at, words in (("2030-01-01T00:00:00", "timezone-aware"), ("soon", "ISO 8601"),
                          ("10000-01-01T00:00:00+00:00", "ISO 8601")):  # fmt: skip
        r = server.request("POST", "/api/v1/tasks", token=write,
                           body={"queue": "q", "type": "t", "run_at": run_at})  # fmt: skip
        assert r.status == 422 and words in error_of(r)[1], (run_at, r.text)


def test_malformed_json_is_400_and_shapes_are_422(server: Server, write: str) -> None:
    for raw in (b"{bad", b"", b"   ", b'{"queue": "q",}', b"\xff\xfe", b"[" * 100000):
        r = server.request("POST", "/api/v1/tasks", token=write, raw=raw,
                           headers={"Content-Type": "application/json"})  # fmt: skip
        assert r.status == 400, raw[:10]
        assert error_of(r)[0] == "malformed_json"
    for raw in (b"[1]", b'"text"', b"3", b"null", b'{"queue": "q", "type": "t", "colour": 1}'):
        r = server.request("POST", "/api/v1/tasks", token=write, raw=raw)
        assert r.status == 422, raw
    # curl -d sends application/x-www-form-urlencoded: the body is still read as JSON
    r = server.request("POST", "/api/v1/tasks", token=write, raw=b'{"queue":"q","type":"t"}',
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status == 201


def test_a_body_over_the_limit_is_413_before_it_is_read(server: Server, write: str) -> None:
    big = b'{"queue":"q","type":"t","spec":"' + b"x" * (1024 * 1024 + 70 * 1024) + b'"}'
    r = server.request("POST", "/api/v1/tasks", token=write, raw=big,
                       headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status == 413 and error_of(r)[0] == "too_large"
    # announced by Content-Length alone: refused before a byte of the body is sent
    conn = server.connection()
    conn.putrequest("POST", "/api/v1/tasks")
    conn.putheader("Authorization", f"Bearer {write}")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    # chunked, with no length: cut off once the bytes pass the limit
    conn = server.connection()
    conn.putrequest("POST", "/api/v1/tasks")
    conn.putheader("Authorization", f"Bearer {write}")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"x" * 65536
    try:
        for _ in range(40):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close before everything is sent
    assert conn.getresponse().status == 413
    conn.close()
    # a spec over the limit inside a body under it: taskq's own refusal
    spec = "x" * (1024 * 1024)
    r = server.request("POST", "/api/v1/tasks", token=write, body={"queue": "q", "type": "t",
                                                                    "spec": spec})  # fmt: skip
    assert r.status == 422 and "limit" in error_of(r)[1]


def test_odd_input_never_gets_a_500(server: Server, read: str, write: str) -> None:
    odd = [
        ("GET", "/api/v1/tasks?limit=0"), ("GET", "/api/v1/tasks?limit=100000"),
        ("GET", "/api/v1/tasks?limit=abc"), ("GET", "/api/v1/tasks?status=sleeping"),
        ("GET", "/api/v1/tasks?cursor=%%%"), ("GET", "/api/v1/tasks?cursor=bm9wZQ"),
        ("GET", "/api/v1/tasks?queue=%00"), ("GET", "/api/v1/tasks?type=" + "x" * 5000),
        ("GET", "/api/v1/tasks/" + "9" * 3000), ("POST", "/api/v1/tasks/%00/cancel"),
        ("GET", "/api/v1/tasks/%F0%9F%98%80/wait"), ("GET", "/api/v1/tasks/%ZZ"),
    ]  # fmt: skip
    for method, path in odd:
        r = server.request(method, path, token=write)
        assert 400 <= r.status < 500, (method, path, r.status, r.text)
        assert r.headers["content-type"].startswith("application/json"), path
        assert "Traceback" not in r.text


def test_unknown_query_parameters_are_refused(server: Server, read: str) -> None:
    r = server.request("GET", "/api/v1/tasks?stauts=failed", token=read)
    assert r.status == 422 and "'stauts'" in error_of(r)[1] and "status" in error_of(r)[1]
    assert server.request("GET", "/api/v1/queues?x=1", token=read).status == 422
    assert server.request("GET", "/api/v1/tasks?status=failed&limit=5", token=read).status == 200
