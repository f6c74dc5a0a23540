"""Property-based API testing from the OpenAPI spec: no generated request may cause a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from bot.http.app import create_app
from gbg.settings import Settings
from ingest.embedders import Embedder
from tests.helpers import make_bot


@pytest.fixture(scope="module")
def api_schema(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
               ) -> Any:
    bot = make_bot(bundled_store, tmp_path_factory.mktemp("schemathesis"), e5=e5)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(bot.settings, bot.service))


def test_no_server_errors(api_schema: Any) -> None:
    from hypothesis import given

    checked = []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)
        def run(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (
                case.method, case.path, case.body, response.status_code, response.text[:300]
            )

        run()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /v1/chat", "POST /v1/feedback", "GET /v1/corpora"} <= set(checked)
