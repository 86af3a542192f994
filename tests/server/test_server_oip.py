"""The Open Inference Protocol v2 endpoints, checked against the spec over a real uvicorn server.

Bodies are written by hand as the KServe v2 / Triton / MLServer documents describe them, so the
tests do not only agree with this project's own client.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from live_server import LiveServer

from engine.contracts import ErrorBody
from engine.server import ServerSettings
from engine.validation import RowValidator, Validated

FIELDS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SETOSA = [5.1, 3.5, 1.4, 0.2]
VERSICOLOR = [6.0, 2.9, 4.5, 1.5]
VIRGINICA = [7.7, 3.0, 6.1, 2.3]
IRIS_LABELS = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path_factory.mktemp("oip") / "s.db"))
    live.start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def infer(client: httpx.Client, model: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"/v2/models/{model}/infer", json=body)


def per_field(rows: list[list[float]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "datatype": "FP32",
            "shape": [len(rows), 1],
            "data": [row[i] for row in rows],
        }
        for i, name in enumerate(FIELDS)
    ]


def output(body: dict[str, Any], name: str) -> dict[str, Any]:
    found = [o for o in body["outputs"] if o["name"] == name]
    assert len(found) == 1, body
    result: dict[str, Any] = found[0]
    return result


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    for word in words:
        assert word in body["error"], body


def test_server_metadata_and_health(client: httpx.Client) -> None:
    meta = client.get("/v2")
    assert meta.status_code == 200
    body = meta.json()
    assert body["name"] == "inferdeck"
    assert isinstance(body["version"], str) and body["version"]
    assert body["extensions"] == ["model_configuration", "statistics"]

    live = client.get("/v2/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    model_ready = client.get("/v2/models/iris/ready")
    assert (model_ready.status_code, model_ready.json()) == (200, {"name": "iris", "ready": True})
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 200
    assert_error(client.get("/v2/models/nope/ready"), 404, "nope")


def test_model_metadata_iris(client: httpx.Client) -> None:
    response = client.get("/v2/models/iris")
    assert response.status_code == 200
    meta = response.json()
    assert meta["name"] == "iris"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "pytorch_torchexport"
    inputs = {t["name"]: t for t in meta["inputs"]}
    for name in FIELDS:
        assert inputs[name] == {"name": name, "datatype": "FP32", "shape": [-1, 1]}
    # Exactly the inputs a request sends (a generic client sends every one listed); the
    # combined `input` tensor is still taken instead (below).
    assert list(inputs) == FIELDS
    assert meta["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert client.get("/v2/models/iris/versions/1").json() == meta
    assert_error(client.get("/v2/models/iris/versions/9"), 404)


def test_model_metadata_digits(client: httpx.Client) -> None:
    meta = client.get("/v2/models/digits").json()
    assert meta["name"] == "digits"
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 10]},
    ]


def test_infer_per_field_and_combined_tensor_agree(client: httpx.Client) -> None:
    rows = [SETOSA, VERSICOLOR, VIRGINICA]
    by_field = infer(client, "iris", {"inputs": per_field(rows)})
    assert by_field.status_code == 200, by_field.text
    body = by_field.json()
    assert body["model_name"] == "iris"
    assert body["model_version"] == "1"
    assert "id" not in body
    label, scores = output(body, "label"), output(body, "scores")
    assert label["datatype"] == "BYTES" and label["shape"] == [3, 1]
    assert label["data"] == IRIS_LABELS
    assert scores["datatype"] == "FP32" and scores["shape"] == [3, 3]
    assert len(scores["data"]) == 9
    for i in range(3):
        row = scores["data"][i * 3 : i * 3 + 3]
        assert sum(row) == pytest.approx(1, abs=1e-3)
        assert row.index(max(row)) == IRIS_LABELS.index(label["data"][i])

    flat = {
        "name": "input",
        "datatype": "FP32",
        "shape": [3, 4],
        "data": [x for row in rows for x in row],
    }
    nested = {**flat, "data": rows}
    flat_out = infer(client, "iris", {"inputs": [flat]})
    nested_out = infer(client, "iris", {"inputs": [nested]})
    assert flat_out.status_code == nested_out.status_code == 200
    assert flat_out.json()["outputs"] == nested_out.json()["outputs"] == body["outputs"]


def test_infer_one_row_integer_datatype_and_1d_columns(client: httpx.Client) -> None:
    tensors = [
        {"name": name, "datatype": "INT32", "shape": [1], "data": [value]}
        for name, value in zip(FIELDS, [5, 3, 1, 0], strict=True)
    ]
    response = infer(client, "iris", {"inputs": tensors})
    assert response.status_code == 200, response.text
    assert output(response.json(), "label")["shape"] == [1, 1]


def test_infer_digits_nested_image(client: httpx.Client) -> None:
    one = [[0.0] * 8 for _ in range(8)]
    for r in range(1, 7):
        one[r][4] = 16.0
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 8, 8], "data": [one]}
    response = infer(client, "digits", {"inputs": [tensor]})
    assert response.status_code == 200, response.text
    assert output(response.json(), "scores")["shape"] == [1, 10]
    flat = infer(
        client, "digits", {"inputs": [{**tensor, "data": [x for row in one for x in row]}]}
    )
    assert flat.json()["outputs"] == response.json()["outputs"]


def stored_rows(server: LiveServer, where: str, *args: object) -> list[tuple[Any, ...]]:
    """(request_id, status, oip_id, oip_row) of the stored requests matching `where`."""
    with sqlite3.connect(server.db_path) as db:
        return db.execute(
            "SELECT request_id, status, json_extract(metadata, '$.oip_id'), "
            "json_extract(metadata, '$.oip_row') FROM requests "
            f"WHERE client_id = 'oip' AND ({where}) ORDER BY request_id",
            args,
        ).fetchall()


def test_id_echoed_outputs_subset_and_rows_stored(server: LiveServer, client: httpx.Client) -> None:
    body = {
        "id": "oip-stored-1",
        "inputs": per_field([SETOSA, VIRGINICA]),
        "outputs": [{"name": "label"}],
    }
    response = client.post(
        "/v2/models/iris/infer", json=body, headers={"X-Request-ID": "oip-xrid-1"}
    )
    assert response.status_code == 200, response.text
    timing = response.headers["server-timing"]  # the stages, as /predict gives them
    assert "inference;dur=" in timing and "write;dur=" in timing
    assert response.headers["x-request-id"] == "oip-xrid-1"
    answer = response.json()
    assert answer["id"] == "oip-stored-1"
    assert [o["name"] for o in answer["outputs"]] == ["label"]
    assert answer["outputs"][0]["data"] == ["setosa", "virginica"]

    # An id the engine cannot use as a request ID is still echoed as given.
    odd = infer(client, "iris", {"id": "has spaces / slashes", "inputs": per_field([SETOSA])})
    assert odd.status_code == 200 and odd.json()["id"] == "has spaces / slashes"

    # Rows take the X-Request-ID (one per batch row); the OIP id is kept in their metadata.
    assert stored_rows(server, "request_id LIKE 'oip-xrid-1%'") == [
        ("oip-xrid-1.0", "ok", "oip-stored-1", 0),
        ("oip-xrid-1.1", "ok", "oip-stored-1", 1),
    ]
    assert stored_rows(server, "request_id = ?", odd.headers["x-request-id"]) == [
        (odd.headers["x-request-id"], "ok", "has spaces / slashes", 0)
    ]


@pytest.mark.parametrize(
    ("model", "inputs", "status", "words"),
    [
        pytest.param("nope", per_field([SETOSA]), 404, ["nope"], id="unknown-model"),
        pytest.param(
            "iris",
            [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0]}],
            400,
            ["shape"],
            id="element-count",
        ),
        pytest.param(
            "iris",
            [{"name": "input", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}],
            400,
            ["shape"],
            id="wrong-shape",
        ),
        pytest.param(
            "iris",
            [{**t, "datatype": "FLOAT"} for t in per_field([SETOSA])],
            400,
            ["datatype"],
            id="bad-datatype",
        ),
        pytest.param(
            "iris",
            [{**t, "datatype": "BYTES", "data": ["1"]} for t in per_field([SETOSA])],
            400,
            ["datatype"],
            id="bytes-for-number",
        ),
        pytest.param("iris", per_field([SETOSA])[:3], 400, ["petal_width"], id="missing-input"),
        pytest.param(
            "iris",
            [
                *per_field([SETOSA]),
                {"name": "colour", "datatype": "FP32", "shape": [1, 1], "data": [1.0]},
            ],
            400,
            ["colour"],
            id="unknown-input",
        ),
        pytest.param(
            "iris",
            [{**t, "data": ["5.1"]} for t in per_field([SETOSA])],
            400,
            ["numbers"],
            id="string-in-fp32",
        ),
        pytest.param(
            "iris",
            [*per_field([SETOSA])[:3], *per_field([SETOSA, SETOSA])[3:]],
            400,
            ["batch"],
            id="batch-mismatch",
        ),
        pytest.param(
            "iris",
            [{**t, "data": [99.0]} for t in per_field([SETOSA])],
            400,
            ["sepal_length"],
            id="out-of-range",
        ),
        pytest.param(
            "iris",
            [{"name": "input", "datatype": "INT8", "shape": [1, 4], "data": [1, 2, 3, 300]}],
            400,
            ["INT8"],
            id="int-overflow",
        ),
    ],
)
def test_infer_errors(
    client: httpx.Client, model: str, inputs: list[dict[str, Any]], status: int, words: list[str]
) -> None:
    assert_error(infer(client, model, {"inputs": inputs}), status, *words)


def test_infer_malformed_bodies(client: httpx.Client) -> None:
    url = "/v2/models/iris/infer"
    assert_error(client.post(url, content=b"{not json"), 400, "JSON")
    assert_error(client.post(url, json={"inputs": []}), 400, "inputs")
    assert_error(
        client.post(url, json={"inputs": per_field([SETOSA]), "outputs": [{"name": "prob"}]}),
        400,
        "prob",
    )


def test_deeply_nested_data_is_a_400_not_a_crash(client: httpx.Client) -> None:
    depth = 1000  # JSON parsers accept it; a recursive flatten would overflow the stack
    data = b"[" * depth + b"1.0" + b"]" * depth
    body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": ' + data
    assert_error(client.post("/v2/models/iris/infer", content=body + b"}]}"), 400, "shape")


def test_a_bad_row_refuses_the_batch_and_none_of_it_runs(
    server: LiveServer, client: httpx.Client
) -> None:
    rows = [SETOSA, [5.0, 99.0, 1.0, 1.0], VERSICOLOR, [5.0, 3.0, -1.0, 1.0]]
    bad = client.post(
        "/v2/models/iris/infer",
        json={"id": "oip-bad-batch", "inputs": per_field(rows)},
        headers={"X-Request-ID": "oip-bad-batch"},
    )
    assert_error(bad, 400, "row 1", "sepal_width", "+1 more", "no row of the batch was run")
    # Only the rejections are stored: the valid rows 0 and 2 were never sent to the model.
    with sqlite3.connect(server.db_path) as db:
        stored = db.execute(
            "SELECT request_id, status, input FROM requests "
            "WHERE request_id LIKE 'oip-bad-batch%' ORDER BY request_id"
        ).fetchall()
    assert [row[:2] for row in stored] == [
        ("oip-bad-batch.1", "rejected"),
        ("oip-bad-batch.3", "rejected"),
    ]
    assert '"oip_id":"oip-bad-batch"' in stored[0][2]  # the rejection keeps the body it refused

    # A lone bad row is named by its field alone.
    assert_error(infer(client, "iris", {"inputs": per_field([[5.0, 99.0, 1.0, 1.0]])}), 400)


def test_a_reused_id_is_echoed_and_every_request_stored(
    server: LiveServer, client: httpx.Client
) -> None:
    # KServe and Triton treat `id` as an opaque correlation value a client may send again.
    answers = [
        infer(client, "iris", {"id": "oip-reused", "inputs": per_field(rows)})
        for rows in ([SETOSA], [VIRGINICA])
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["id"] == "oip-reused"
    ids = sorted(a.headers["x-request-id"] for a in answers)
    assert ids[0] != ids[1]
    assert stored_rows(server, "json_extract(metadata, '$.oip_id') = 'oip-reused'") == [
        (ids[0], "ok", "oip-reused", 0),
        (ids[1], "ok", "oip-reused", 0),
    ]

    # The caller's X-Request-ID names the stored row, so that one must be new.
    headers = {"X-Request-ID": "oip-xrid-twice"}
    body = {"id": "oip-reused", "inputs": per_field([SETOSA])}
    first = client.post("/v2/models/iris/infer", json=body, headers=headers)
    assert first.status_code == 200, first.text
    again = client.post("/v2/models/iris/infer", json=body, headers=headers)
    assert_error(again, 409, "oip-xrid-twice")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/foo", 404),
        ("GET", "/v2/models/iris/bogus", 404),
        ("POST", "/v2/models/iris/versions/1/infer/more", 404),
        ("POST", "/v2/models/iris/ready", 405),
        ("GET", "/v2/models/iris/infer", 405),
    ],
)
def test_unknown_v2_paths_answer_in_oip_shape(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert_error(response, status, path)
    if status == 405:
        assert response.headers["allow"]  # what the path does take


def test_paths_outside_v2_keep_the_envelope(client: httpx.Client) -> None:
    response = client.get("/v2x/foo")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_body_over_the_limit_is_refused_in_oip_shape(client: httpx.Client) -> None:
    # The edge layer refuses a declared length over the limit before any route reads it.
    response = client.post(
        "/v2/models/iris/infer",
        content=b"{" + b" " * (2 << 20) + b"}",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert set(response.json()) == {"error"} and "limit" in response.json()["error"]


def test_each_row_of_a_batch_is_validated_once(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service runs in this process (a uvicorn thread): count the validator's calls."""
    calls: list[int] = []
    validate = RowValidator.validate

    def counted(self: RowValidator, data: bytes | dict[str, Any]) -> Validated | ErrorBody:
        calls.append(1)
        return validate(self, data)

    monkeypatch.setattr(RowValidator, "validate", counted)
    rows = [SETOSA, VERSICOLOR, VIRGINICA, SETOSA, VIRGINICA]
    answered = infer(client, "iris", {"inputs": per_field(rows)})
    assert answered.status_code == 200, answered.text
    assert output(answered.json(), "label")["data"] == [
        "setosa",
        "versicolor",
        "virginica",
        "setosa",
        "virginica",
    ]
    assert len(calls) == len(rows)
