"""`GET /models/{m}` offers the model's own example (its first held-out row) beside its schema,
from a real uvicorn: the same values the app's local form starts from, a body `/predict` takes,
and an addition an older reader of `ModelInfo` need not know."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer

from engine.models import ModelRegistry
from engine.models.examples import model_example
from engine.server import ServerSettings
from engine.server.app import ModelInfo


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path / "serve.db"))
    live.start()
    yield live
    live.stop()


def test_a_model_description_offers_its_own_example(server: LiveServer) -> None:
    registry = ModelRegistry.discover()
    listed = httpx.get(f"{server.url}/models", timeout=30).json()["models"]
    for name, label in (("iris", "versicolor"), ("digits", "9")):
        model = registry.models[name]
        info = httpx.get(f"{server.url}/models/{name}", timeout=30).json()
        ModelInfo.model_validate(info)
        own = model_example(model.manifest, model.folder)
        assert info["example"] == own and own, name
        assert info in listed  # one description, in the list too
        # A valid input_payload as it stands: the held-out row's own label comes back.
        body = {"client_id": "example", "model": name, "input_payload": info["example"]}
        answer = httpx.post(f"{server.url}/predict", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]["label"] == label
    assert listed[0]["example"] != listed[1]["example"]
    # Backwards compatible: the field is an addition, an answer without it is still valid.
    older = {k: v for k, v in info.items() if k != "example"}
    assert ModelInfo.model_validate(older).example == {}
    document = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    described = document["components"]["schemas"]["ModelInfo"]
    assert "example" in described["properties"] and "example" not in described["required"]
