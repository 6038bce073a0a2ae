"""Property-based fuzzing of the live `taskq serve` from its own OpenAPI document
(schemathesis): for every operation, generated requests, valid and invalid, never get
a 500, and every response matches the document (status code, content type, headers,
body schema)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.serve import Server, make_token

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]  # fmt: skip
EXAMPLES = 25


@pytest.fixture(scope="module")
def server(database_url: str, schema: str) -> Iterator[Server]:
    s = Server(database_url, schema)
    yield s
    assert s.stop() == 0
    assert not any("Traceback" in line for line in s.stderr), "".join(s.stderr)


@pytest.fixture(scope="module")
def admin(database_url: str, schema: str) -> str:
    return make_token(database_url, schema, "admin")


def _operations(server: Server) -> list[object]:
    loaded = schemathesis.openapi.from_url(f"{server.base}/api/v1/openapi.json")
    return [op.ok() for op in loaded.get_all_operations()]


@pytest.mark.timeout(900)  # a few hundred requests; slow when the machine is shared
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzz_every_operation_from_the_openapi_document(
    server: Server, admin: str, mode: str
) -> None:
    from schemathesis import GenerationMode

    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    checks = CHECKS + ([negative_data_rejection] if mode == "negative" else [])
    headers = {"Authorization": f"Bearer {admin}"}
    operations = _operations(server)
    assert len(operations) >= 12
    for op in operations:

        @given(case=op.as_strategy(generation_mode=generation))  # type: ignore[attr-defined]
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: object) -> None:
            case.call_and_validate(base_url=server.base, headers=headers,  # type: ignore[attr-defined]
                                   checks=checks, timeout=30)  # fmt: skip

        try:
            run()
        except Unsatisfiable:
            assert mode == "negative"  # nothing in this operation can be made invalid
