"""The OIP endpoints as Triton's own HTTP client (tritonclient 2.x) calls them, over a real
uvicorn server: metadata, model configuration, the repository index, and inference with the
client's defaults (binary tensors both ways) and forced JSON, for both built-in models and
batches up to the advertised maximum. Binary bodies a hostile caller might send are refused
with a message, never a 500."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from live_server import LiveServer
from tritonclient.utils import InferenceServerException

from engine.server import ServerSettings

FIELDS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_ROWS = np.array(
    [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [7.7, 3.0, 6.1, 2.3]], dtype=np.float32
)
IRIS_LABELS = [b"setosa", b"versicolor", b"virginica"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path_factory.mktemp("triton") / "s.db"))
    live.start()
    yield live
    live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[triton.InferenceServerClient]:
    found = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield found
    found.close()


def iris_inputs(rows: np.ndarray, binary: bool) -> list[triton.InferInput]:
    inputs = []
    for i, name in enumerate(FIELDS):
        tensor = triton.InferInput(name, [len(rows), 1], "FP32")
        tensor.set_data_from_numpy(rows[:, i : i + 1].copy(), binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_server_and_model_metadata_list_what_a_request_must_send(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert "model_configuration" in client.get_server_metadata()["extensions"]
    iris = client.get_model_metadata("iris")
    # perf_analyzer sends every input listed: the per-field ones, not also the combined one.
    assert [t["name"] for t in iris["inputs"]] == FIELDS
    assert {t["datatype"] for t in iris["inputs"]} == {"FP32"}
    digits = client.get_model_metadata("digits")
    assert digits["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8]}]
    assert client.is_model_ready("iris") and client.is_model_ready("digits")


def test_model_configuration_as_triton_writes_it(client: triton.InferenceServerClient) -> None:
    iris = client.get_model_config("iris")
    assert iris["name"] == "iris" and iris["max_batch_size"] > 0
    inputs = {t["name"]: t for t in iris["input"]}
    for name in FIELDS:
        assert inputs[name] == {"name": name, "data_type": "TYPE_FP32", "dims": [1]}
    # Exactly the metadata's inputs: perf_analyzer refuses a configured input the metadata
    # does not list (the combined `input` tensor is still taken: test_server_oip.py).
    assert list(inputs) == FIELDS
    assert iris["output"] == [
        {"name": "label", "data_type": "TYPE_STRING", "dims": [1]},
        {"name": "scores", "data_type": "TYPE_FP32", "dims": [3]},
    ]
    digits = client.get_model_config("digits", "1")
    assert digits["input"] == [{"name": "image", "data_type": "TYPE_FP32", "dims": [8, 8]}]
    assert digits["output"][1] == {"name": "scores", "data_type": "TYPE_FP32", "dims": [10]}
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_model_config("nope")


def test_repository_index_lists_the_models_served(client: triton.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    assert sorted((m["name"], m["version"], m["state"]) for m in index) == [
        ("digits", "1", "READY"),
        ("iris", "1", "READY"),
        ("langid", "1", "READY"),
    ]


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize(
    "binary_out", [True, False, None], ids=["binary-out", "json-out", "default"]
)
def test_iris_infer_binary_and_json_both_ways(
    client: triton.InferenceServerClient, binary_in: bool, binary_out: bool | None
) -> None:
    outputs = None  # the client's default: every output, asked for as binary
    if binary_out is not None:
        outputs = [
            triton.InferRequestedOutput(n, binary_data=binary_out) for n in ("label", "scores")
        ]
    result = client.infer("iris", iris_inputs(IRIS_ROWS, binary_in), outputs=outputs)
    labels = result.as_numpy("label")
    scores = result.as_numpy("scores")
    assert labels is not None and scores is not None
    # (binary BYTES come back as bytes, JSON ones as str)
    assert [x.encode() if isinstance(x, str) else x for x in labels.reshape(-1)] == IRIS_LABELS
    assert scores.shape == (3, 3) and scores.dtype == np.float32
    assert list(scores.argmax(axis=1)) == [0, 1, 2]
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_one_output_binary_and_one_json_in_the_same_answer(
    client: triton.InferenceServerClient,
) -> None:
    outputs = [
        triton.InferRequestedOutput("scores", binary_data=True),
        triton.InferRequestedOutput("label", binary_data=False),
    ]
    result = client.infer("iris", iris_inputs(IRIS_ROWS, True), outputs=outputs)
    label = result.get_output("label")
    assert label is not None and "data" in label  # JSON
    scores = result.get_output("scores")
    assert scores is not None and scores["parameters"]["binary_data_size"] == 3 * 3 * 4
    assert result.as_numpy("scores").shape == (3, 3)


def test_digits_at_the_advertised_batch_limit_binary_and_json(
    client: triton.InferenceServerClient,
) -> None:
    limit = client.get_model_config("digits")["max_batch_size"]
    rng = np.random.default_rng(3)
    images = rng.uniform(0.0, 16.0, size=(limit, 8, 8)).astype(np.float32)
    for binary in (True, False):
        tensor = triton.InferInput("image", [limit, 8, 8], "FP32")
        tensor.set_data_from_numpy(images, binary_data=binary)
        result = client.infer("digits", [tensor])
        assert result.as_numpy("scores").shape == (limit, 10)
        assert result.as_numpy("label").shape == (limit, 1)
    over = triton.InferInput("image", [limit + 1, 8, 8], "FP32")
    over.set_data_from_numpy(np.zeros((limit + 1, 8, 8), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=str(limit)):
        client.infer("digits", [over])


# -- binary bodies a careless or hostile caller sends ---------------------------------------------


def _header(inputs: list[dict[str, object]]) -> bytes:
    import orjson

    return orjson.dumps({"inputs": inputs})


def _post(server: LiveServer, body: bytes, header_length: str) -> httpx.Response:
    headers = {"Inference-Header-Content-Length": header_length}
    return httpx.post(f"{server.url}/v2/models/iris/infer", content=body, headers=headers)


def _one_row_inputs(sizes: dict[str, int]) -> list[dict[str, object]]:
    return [
        {
            "name": name,
            "datatype": "FP32",
            "shape": [1, 1],
            "parameters": {"binary_data_size": sizes.get(name, 4)},
        }
        for name in FIELDS
    ]


@pytest.mark.parametrize(
    ("case", "word"),
    [
        ("header past the body", "outside the body"),
        ("header not a number", "not a number"),
        ("size past the end", "past the end"),
        ("bytes left over", "belong to no input"),
        ("size not a whole value", "whole number"),
        ("shape and size disagree", "holds 1 elements"),
        ("size without the header", "needs the Inference-Header-Content-Length"),
        # From an attack on this code: each was a 500 or stalled the server.
        ("header with a sign", "not a number"),
        ("JSON nested too deeply", "nested too deeply"),
        ("a shape of huge dimensions", "holds more than 1 elements"),
        ("NaN in the data", "NaN"),
    ],
)
def test_bad_binary_bodies_are_refused_with_a_message(
    server: LiveServer, case: str, word: str
) -> None:
    values = struct.pack("<4f", 5.1, 3.5, 1.4, 0.2)
    head = _header(_one_row_inputs({}))
    body, length = head + values, str(len(head))
    if case == "header past the body":
        length = str(len(body) + 1)
    elif case == "header not a number":
        length = "12abc"
    elif case == "size past the end":
        head = _header(_one_row_inputs({"petal_width": 4000}))
        body, length = head + values, str(len(head))
    elif case == "bytes left over":
        body += b"\0" * 8
    elif case == "size not a whole value":
        head = _header(_one_row_inputs({"sepal_length": 3, "sepal_width": 5}))
        body, length = head + values, str(len(head))
    elif case == "shape and size disagree":
        head = _header(_one_row_inputs({"sepal_length": 8, "sepal_width": 0}))
        body, length = head + values, str(len(head))
    elif case == "header with a sign":
        length = "+" + length
    elif case == "JSON nested too deeply":
        head = _header(_one_row_inputs({}))[:-1] + b',"x":' + b"[" * 300 + b"]" * 300 + b"}"
        body, length = head + values, str(len(head))
    elif case == "a shape of huge dimensions":
        tensors = _one_row_inputs({})
        tensors[0]["shape"] = [(1 << 63) - 1] * 3000 + [1]  # the product alone took seconds
        head = _header(tensors)
        body, length = head + values, str(len(head))
    elif case == "NaN in the data":
        body = head + struct.pack("<4f", float("nan"), 3.5, 1.4, 0.2)
    elif case == "size without the header":
        response = httpx.post(f"{server.url}/v2/models/iris/infer", content=head)
        assert response.status_code == 400 and word in response.json()["error"], response.text
        return
    response = _post(server, body, length)
    assert response.status_code == 400, response.text
    assert word in response.json()["error"]


def test_bytes_elements_cut_short_or_not_text_are_refused(server: LiveServer) -> None:
    """A BYTES tensor (the label output's type; an enum field's input) whose length prefix
    runs past its data, or whose bytes are not UTF-8."""
    cases = (
        (struct.pack("<I", 50) + b"abc", "longer"),
        (b"\x02\0", "cut off"),
        (struct.pack("<I", 2) + b"\xff\xfe", "UTF-8"),
    )
    for raw, word in cases:
        tensor = {"name": "x", "datatype": "BYTES", "shape": [1]}
        head = _header([tensor | {"parameters": {"binary_data_size": len(raw)}}])
        response = _post(server, head + raw, str(len(head)))
        assert response.status_code == 400 and word in response.json()["error"], response.text


def test_json_body_with_the_header_equal_to_its_length_is_plain_json(server: LiveServer) -> None:
    """perf_analyzer always sends the header, even for a JSON body: then it is the body's length."""
    import orjson

    body = orjson.dumps(
        {
            "inputs": [
                {"name": n, "datatype": "FP32", "shape": [1, 1], "data": [v]}
                for n, v in zip(FIELDS, IRIS_ROWS[0].tolist(), strict=True)
            ]
        }
    )
    response = _post(server, body, str(len(body)))
    assert response.status_code == 200, response.text
    label = next(o for o in response.json()["outputs"] if o["name"] == "label")
    assert label["data"] == ["setosa"]


def test_statistics_count_what_ran_per_stage_and_per_batch_size(
    client: triton.InferenceServerClient,
) -> None:
    def stats() -> dict[str, object]:
        found = client.get_inference_statistics("iris")["model_stats"]
        assert [m["name"] for m in found] == ["iris"]
        return dict(found[0])

    before = stats()
    client.infer("iris", iris_inputs(IRIS_ROWS, True))
    after = stats()
    inference = after["inference_stats"]
    assert isinstance(inference, dict)
    old = before["inference_stats"]
    assert isinstance(old, dict)
    assert after["inference_count"] == int(before["inference_count"]) + 3  # type: ignore[call-overload]
    runs = int(after["execution_count"]) - int(before["execution_count"])  # type: ignore[call-overload]
    assert 1 <= runs <= 3  # the three rows ran in one batch or more
    for stage in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert inference[stage]["count"] == old[stage]["count"] + 3, stage
        assert inference[stage]["ns"] > old[stage]["ns"], stage
    assert inference["fail"] == old["fail"]
    batches = after["batch_stats"]
    assert isinstance(batches, list) and batches
    assert sum(b["compute_infer"]["count"] for b in batches) == after["execution_count"]
    # A row the model's schema refuses (stored as rejected) counts as a failure of the model.
    out_of_range = IRIS_ROWS[:1].copy()
    out_of_range[0, 0] = 99.0  # sepal_length: at most 30 cm
    with pytest.raises(InferenceServerException, match="sepal_length"):
        client.infer("iris", iris_inputs(out_of_range, True))
    assert stats()["inference_stats"]["fail"]["count"] > old["fail"]["count"]  # type: ignore[index]
    every = client.get_inference_statistics()["model_stats"]
    assert sorted(m["name"] for m in every) == ["digits", "iris", "langid"]
    with pytest.raises(InferenceServerException, match="nope"):
        client.get_inference_statistics("nope")


def test_an_output_asked_for_twice_is_refused_not_a_500(server: LiveServer) -> None:
    """Asked twice, once as binary: the answer held one output object twice, and moving its
    data out the second time raised."""
    import orjson

    body = orjson.dumps(
        {
            "inputs": [
                {"name": n, "datatype": "FP32", "shape": [1, 1], "data": [v]}
                for n, v in zip(FIELDS, IRIS_ROWS[0].tolist(), strict=True)
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}, {"name": "label"}],
        }
    )
    response = httpx.post(f"{server.url}/v2/models/iris/infer", content=body)
    assert response.status_code == 400 and "twice" in response.json()["error"], response.text
