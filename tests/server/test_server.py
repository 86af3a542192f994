"""`inferdeck serve` for real: uvicorn on 127.0.0.1, a real SQLite file, httpx as the caller."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from conftest import REPO
from live_server import BODY, ROW, LiveServer, ServeProcess, free_port

from engine.contracts import PredictResponse
from engine.models import ModelRegistry
from engine.pipeline import EngineConfig
from engine.server import ServerSettings, asgi_app, create_app
from engine.server.app import ModelInfo

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path / "serve.db", max_body_bytes=4096))
    live.start()
    yield live
    live.stop()


def test_predict_contract_ids_trace_and_timing(server: LiveServer, tmp_path: Path) -> None:
    response = httpx.post(
        f"{server.url}/predict",
        json=BODY,
        headers={"X-Request-ID": "caller-42", "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"},
    )
    assert response.status_code == 200
    body = response.json()
    PredictResponse.model_validate(body)  # the documented contract, exactly
    assert body["request_id"] == "caller-42" == response.headers["x-request-id"]
    assert (body["model"], body["model_version"]) == ("iris", "1")
    assert body["outputs"]["label"] == "setosa"
    assert [s["name"] for s in body["spans"]] == [
        "validate",
        "metadata",
        "queue_wait",
        "inference",
        "write",
    ]
    version, trace_id, parent, flags = response.headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert parent != "b7ad6b7169203331" and len(parent) == 16  # this server's own span
    timing = response.headers["server-timing"]
    assert "inference;dur=" in timing and "write;dur=" in timing

    # Without headers: an ID is made and a trace is started.
    plain = httpx.post(f"{server.url}/predict", json=BODY)
    assert plain.json()["request_id"] == plain.headers["x-request-id"]
    assert plain.headers["traceparent"].split("-")[1] != TRACE_ID

    with sqlite3.connect(tmp_path / "serve.db") as conn:
        stored = conn.execute(
            "SELECT status, model, client_id, source FROM requests WHERE request_id = ?",
            ("caller-42",),
        ).fetchone()
    assert stored == ("ok", "iris", "svc-test", "http")


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        (
            {"json": {**BODY, "input_payload": {**ROW, "sepal_width": "wide"}}},
            422,
            "validation_error",
        ),
        ({"content": b'{"client_id": "a", "model"'}, 422, "invalid_json"),
        ({"json": {**BODY, "model": "nope"}}, 404, "unknown_model"),
        ({"json": {**BODY, "surprise": 1}}, 422, "validation_error"),
        ({"content": b"x" * 5000}, 413, "body_too_large"),
    ],
)
def test_errors_use_one_envelope(
    server: LiveServer, send: dict[str, object], status: int, code: str
) -> None:
    response = httpx.post(f"{server.url}/predict", **send)  # type: ignore[arg-type]
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


def test_field_errors_name_the_field_and_are_stored(server: LiveServer, tmp_path: Path) -> None:
    bad = {**BODY, "input_payload": {**ROW, "petal_width": -5}}
    response = httpx.post(f"{server.url}/predict", json=bad, headers={"X-Request-ID": "bad-1"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["details"][0]["field"] == "input_payload.petal_width"
    assert error["request_id"] == "bad-1"
    first = httpx.post(f"{server.url}/predict", json={**BODY, "request_id": "twice"})
    again = httpx.post(f"{server.url}/predict", json={**BODY, "request_id": "twice"})
    assert first.status_code == 200
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "duplicate_request_id"
    with sqlite3.connect(tmp_path / "serve.db") as conn:
        (status,) = conn.execute(
            "SELECT status FROM requests WHERE request_id = 'bad-1'"
        ).fetchone()
    assert status == "rejected"  # a refused request is in the history too


def test_routes_and_methods_outside_the_api_get_the_envelope(server: LiveServer) -> None:
    missing = httpx.get(f"{server.url}/nowhere")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.get(f"{server.url}/predict")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    models = httpx.get(f"{server.url}/models").json()["models"]
    assert {m["name"] for m in models} == {"iris", "digits", "langid"}
    docs = httpx.get(f"{server.url}/openapi.json").json()
    assert "/predict" in docs["paths"]


def test_one_model_by_name_is_the_model_ready_probe(server: LiveServer) -> None:
    found = httpx.get(f"{server.url}/models/iris")
    assert found.status_code == 200
    info = found.json()
    ModelInfo.model_validate(info)  # the documented shape
    iris = ModelRegistry.discover().models["iris"]
    assert (info["name"], info["version"], info["task"]) == ("iris", "1", "tabular-classification")
    assert info["input_schema"] == iris.inputs.model_json_schema()
    assert info["labels"] == ["setosa", "versicolor", "virginica"]
    outputs = info["output_schema"]
    assert outputs["properties"]["label"]["enum"] == info["labels"]
    assert outputs["properties"]["scores"]["required"] == info["labels"]
    assert info in httpx.get(f"{server.url}/models").json()["models"]  # one description

    missing = httpx.get(f"{server.url}/models/nope", headers={"X-Request-ID": "probe-1"})
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "unknown_model" and "nope" in error["message"]
    assert error["request_id"] == "probe-1"


def test_openapi_has_each_models_request_schema(server: LiveServer, tmp_path: Path) -> None:
    document = httpx.get(f"{server.url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    body = body["schema"]
    assert body["discriminator"]["propertyName"] == "model"
    mapping = body["discriminator"]["mapping"]
    assert mapping == {
        "digits": "#/components/schemas/DigitsPredictRequest",
        "iris": "#/components/schemas/IrisPredictRequest",
        "langid": "#/components/schemas/LangidPredictRequest",
    }
    assert [one["$ref"] for one in body["oneOf"]] == list(mapping.values())

    registry = ModelRegistry.discover()
    for name, ref in mapping.items():
        request = schemas[ref.removeprefix("#/components/schemas/")]
        assert request["properties"]["model"]["const"] == name
        assert request["required"] == ["client_id", "model", "input_payload"]
        assert request["additionalProperties"] is False
        inputs_ref = request["properties"]["input_payload"]["$ref"]
        inputs = schemas[inputs_ref.removeprefix("#/components/schemas/")]
        fields = registry.models[name].manifest.inputs
        assert list(inputs["properties"]) == [f.name for f in fields]  # the manifest's fields
        assert inputs["required"] == [f.name for f in fields if f.default is None]
        assert inputs["additionalProperties"] is False
        for spec in fields:
            described = inputs["properties"][spec.name]
            assert described.get("description") == (spec.description or None)
            if spec.type in ("float", "int"):
                assert (described["minimum"], described["maximum"]) == (spec.minimum, spec.maximum)

    # The documented body accepts what /predict accepts and refuses what it refuses.
    check = jsonschema_rs.validator_for({**body, "components": {"schemas": schemas}})
    assert check.is_valid(BODY)
    assert check.is_valid({**BODY, "model": "digits", "input_payload": {"image": [0.0] * 64}})
    assert not check.is_valid({**BODY, "input_payload": {**ROW, "petal_width": -5}})
    assert not check.is_valid({**BODY, "input_payload": {**ROW, "colour": "blue"}})
    assert not check.is_valid({**BODY, "model": "digits"})  # iris fields for digits
    assert not check.is_valid({**BODY, "model": "nope"})

    # Before start-up (as the fuzz test reads it), the document knows the same models.
    cold = create_app(ServerSettings(db_path=tmp_path / "unused.db")).openapi()
    assert cold["paths"]["/predict"] == document["paths"]["/predict"]
    assert cold["components"]["schemas"]["IrisInputs"] == schemas["IrisInputs"]


def test_not_ready_until_the_lifespan_has_warmed_the_models(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = asgi_app(ServerSettings(db_path=tmp_path / "cold.db"))
        # ASGITransport runs no lifespan: this is the app before start-up finished.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/ready")
            predict = await client.post("/predict", json=BODY)
            model = await client.get("/models/iris")
            live = await client.get("/health")
        assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
        assert ready.json()["error"]["code"] == "not_ready"
        assert predict.status_code == 503
        assert model.status_code == 503  # a "model ready" probe says no until warm
        assert live.status_code == 200

    asyncio.run(scenario())


def test_overload_answers_503_at_once(tmp_path: Path) -> None:
    settings = ServerSettings(
        db_path=tmp_path / "small.db", engine=EngineConfig(queue_capacity=4, max_batch=4)
    )
    live = LiveServer(settings)
    live.start()
    try:

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=live.url, limits=limits, timeout=30) as c:
                return await asyncio.gather(*(c.post("/predict", json=BODY) for _ in range(400)))

        responses = asyncio.run(burst())
    finally:
        live.stop()
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 503} and 503 in statuses and 200 in statuses
    busy = [r for r in responses if r.status_code == 503]
    assert busy[0].headers["retry-after"] == "1"
    assert busy[0].json()["error"]["code"] == "overloaded"
    # A refusal is answered before its row is committed (no write span), and the row still
    # goes in: the graceful stop flushed every one of them.
    assert all("write;dur=" not in r.headers["server-timing"] for r in busy)
    with sqlite3.connect(tmp_path / "small.db") as conn:
        refused = {
            rid
            for (rid,) in conn.execute(
                "SELECT request_id FROM requests WHERE status = 'rejected' AND error LIKE ?",
                ('%"overloaded"%',),
            )
        }
    assert {r.json()["error"]["request_id"] for r in busy} <= refused


def test_graceful_shutdown_finishes_requests_in_flight(tmp_path: Path) -> None:
    live = LiveServer(ServerSettings(db_path=tmp_path / "drain.db"))
    live.start()

    async def traffic() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
            tasks = [asyncio.create_task(client.post("/predict", json=BODY)) for _ in range(64)]
            # Once one is answered the others are on the wire or in the engine: stop now.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            live.server.should_exit = True
            results = await asyncio.gather(*tasks, return_exceptions=True)
        return [r for r in results if isinstance(r, httpx.Response)]

    answered = asyncio.run(traffic())
    live.thread.join(timeout=30)
    assert len(answered) > 1 and all(r.status_code == 200 for r in answered)
    with sqlite3.connect(tmp_path / "drain.db") as conn:
        ok = {r for (r,) in conn.execute("SELECT request_id FROM requests WHERE status = 'ok'")}
        (run_status,) = conn.execute("SELECT status FROM runs WHERE kind = 'serve'").fetchone()
    assert {r.json()["request_id"] for r in answered} <= ok  # every answer was committed
    assert run_status == "done"  # the lifespan closed its run: the writer was flushed


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_drains_a_request_in_flight_and_exits_0(tmp_path: Path, sig: int) -> None:
    """A closed terminal (SIGHUP) drains as SIGTERM does: the request whose body is still
    arriving is answered and committed, and serve ends in exit 0, not by the signal."""
    served = ServeProcess(tmp_path / "serve.log")
    body = json.dumps({**BODY, "request_id": "in-flight-1"}).encode()
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock:
        head = (
            f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:10])
        time.sleep(0.3)  # the request is in the service when the signal comes
        served.proc.send_signal(sig)
        time.sleep(0.3)
        assert served.proc.poll() is None, "a stop signal must not kill the service at once"
        sock.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    code = served.proc.wait(timeout=60)  # it stops on that one signal, nothing more sent
    log = served.log.read_text()
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert code == 0, log
    assert "Traceback" not in log
    with sqlite3.connect(served.db) as conn:
        (status,) = conn.execute(
            "SELECT status FROM requests WHERE request_id = 'in-flight-1'"
        ).fetchone()
    assert status == "ok"


@pytest.mark.slow
def test_cli_serve_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "workers.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=REPO,
        env={**os.environ, "INFERDECK_DB": str(db)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        workers = 0
        while time.monotonic() < deadline and workers < 2:
            time.sleep(0.2)
            if db.exists():
                # The schema appears at once, when the first worker's migration commits.
                with contextlib.suppress(sqlite3.OperationalError), sqlite3.connect(db) as conn:
                    workers = conn.execute(
                        "SELECT count(*) FROM runs WHERE kind = 'serve'"
                    ).fetchone()[0]
        assert workers == 2, "two worker processes, each with its own serve run"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with httpx.Client(base_url=url) as client:
            ids = [client.post("/predict", json=BODY).json()["request_id"] for _ in range(40)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            f"SELECT count(*) FROM requests WHERE status = 'ok' AND request_id IN "
            f"({', '.join('?' for _ in ids)})",
            ids,
        ).fetchone()[0]
        owners = conn.execute("SELECT count(DISTINCT owner_pid) FROM runs").fetchone()[0]
    assert stored == 40 and owners == 2
    log_lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    predict_lines = [entry for entry in log_lines if entry["route"] == "/predict"]
    assert {entry["request_id"] for entry in predict_lines} >= set(ids)
    assert all(entry["status"] == 200 and entry["model"] == "iris" for entry in predict_lines)


def test_cli_serve_refuses_bad_arguments_in_one_line(cli: Any) -> None:
    result = cli("serve", "--models-dir", "/no/such/folder")
    assert result.code == 2
    assert result.stderr.strip() == "inferdeck: --models-dir /no/such/folder: not a folder"
    workers = cli("serve", "--workers", "0")
    assert workers.code == 2 and "--workers must be at least 1" in workers.stderr


def test_an_inference_failure_is_a_500_without_internals(
    server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.models.runtime import LoadedModel

    def broken(self: LoadedModel, rows: object) -> object:
        raise RuntimeError("secret internal detail: /opt/weights missing")

    monkeypatch.setattr(LoadedModel, "predict_batch", broken)
    response = httpx.post(f"{server.url}/predict", json={**BODY, "request_id": "boom-1"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error == {
        "code": "internal",
        "message": "the request could not be completed",
        "details": [
            {
                "field": None,
                "message": "the request could not be completed",
                "type": None,
                "row": None,
                "line": None,
            }
        ],
        "request_id": "boom-1",
    }
    assert "secret" not in response.text
    with sqlite3.connect(tmp_path / "serve.db") as conn:
        status, stored_error = conn.execute(
            "SELECT status, error FROM requests WHERE request_id = 'boom-1'"
        ).fetchone()
    assert status == "failed" and "secret internal detail" in stored_error  # kept for operators
