"""Schema-based fuzzing of the HTTP API: every operation in the service's own OpenAPI document,
with inputs generated from it (valid and not), against a real uvicorn server: never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from live_server import LiveServer

from engine.server import ServerSettings, create_app

# The document as the service publishes it (building it needs no models or database).
schema = schemathesis.openapi.from_dict(
    create_app(ServerSettings(db_path=Path("unused"))).openapi()
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path_factory.mktemp("fuzz") / "fuzz.db"))
    live.start()
    yield live
    live.stop()


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_service_fail(case: schemathesis.Case[Any], server: LiveServer) -> None:
    response = case.call(base_url=server.url)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert "error" in body  # the envelope (or OIP's {"error": msg}), never a traceback
