"""schemathesis over the served /openapi.json: no 5xx, every response within the schema."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance
from serve_support import Served, new_key, serving


@pytest.fixture(scope="module")
def served(dsn: str) -> Iterator[tuple[Served, str]]:
    with serving(dsn) as s, psycopg.connect(dsn, autocommit=True) as db:
        _, token = new_key(db, "schemathesis", requests_per_s=10_000, rows_per_s=1_000_000)
        yield s, token


def test_api_never_answers_5xx_or_outside_its_schema(served: tuple[Served, str]) -> None:
    server, token = served
    # the review web app (/ui) is another issue's; this run covers the API
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.startswith("/ui")]
    assert {"/v1/traces", "/v1/feedback", "/v1/check-input", "/v1/few-shot", "/api/public/scores"} <= {
        op.path for op in operations}
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                                   checks=[not_a_server_error, response_schema_conformance, content_type_conformance])

        run()
    answered = sum(float(line.rsplit(" ", 1)[1]) for line in httpx.get(server.url + "/metrics").text.splitlines()
                   if line.startswith("dbflywheel_http_requests_total{"))
    assert answered >= 10 * len(operations)  # the run really called the server
