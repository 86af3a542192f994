"""A user's models served by `inferdeck serve --models-dir`: a regressor (Celsius to Fahrenheit
and Kelvin, exact) and a text classifier (six words), through every surface of the service.

One real `inferdeck serve` process for the module, on 127.0.0.1, called by real clients:
httpx for `POST /predict`, `/models/{m}`, `/openapi.json` and OIP JSON bodies written by hand,
Triton's own `tritonclient.http` for OIP with binary tensors and with JSON, the desktop app's
remote forms (built from the service's metadata, sent through its own client), and the CLI's
`export` on the service's database. The model folders come from `tests/model_folders.py`, so
every answer checked here is known exactly.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import numpy as np
import pytest
import tritonclient.http as triton
from conftest import run_cli
from live_server import ServeProcess
from model_folders import regression_folder, text_folder
from pydantic import ValidationError
from tritonclient.utils import InferenceServerException

from engine.remote.client import TargetClient
from engine.remote.inferdeck_form import fetch_inferdeck_form
from engine.remote.oip_form import RemoteForm, adapter_for, fetch_oip_form, send_prediction
from engine.remote.targets import Target

REGRESSOR, TEXT = "temperature", "review"
BOILING = {"fahrenheit": 212.0, "kelvin": 373.15}  # 100 °C
MINUS_40 = {"fahrenheit": -40.0, "kelvin": 233.15}  # -40 °C: where the two scales meet
MAX_TEXT = 200  # the text folder's `max_length`


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("user-models")
    models = root / "models"
    regression_folder(models / "temperature", REGRESSOR)
    text_folder(models / "review", TEXT)
    serve = ServeProcess(root / "serve.log", "--models-dir", str(models), db=root / "serve.db")
    yield serve
    code, log = serve.stop()
    assert code == 0, log


@pytest.fixture
def client(server: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


@pytest.fixture
def triton_client(server: ServeProcess) -> Iterator[triton.InferenceServerClient]:
    found = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield found
    found.close()


def predict(client: httpx.Client, model: str, payload: dict[str, Any]) -> httpx.Response:
    body = {"client_id": "user-models", "model": model, "input_payload": payload}
    return client.post("/predict", json=body)


def infer(client: httpx.Client, model: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"/v2/models/{model}/infer", json=body)


def celsius(*values: float) -> dict[str, Any]:
    return {"name": "celsius", "datatype": "FP32", "shape": [len(values), 1], "data": values}


def texts(*values: str) -> dict[str, Any]:
    return {"name": "text", "datatype": "BYTES", "shape": [len(values), 1], "data": values}


def outputs_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in body["outputs"]}


def assert_oip_error(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    for word in words:
        assert word in body["error"], body
    message: str = body["error"]
    return message


# -- POST /predict and the model descriptions ------------------------------------------------------


def test_predict_answers_a_regressors_values_by_name(client: httpx.Client) -> None:
    answer = predict(client, REGRESSOR, {"celsius": 100})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["model_version"]) == (REGRESSOR, "1")
    assert body["outputs"] == {"values": BOILING}  # exactly: no label, no scores
    assert predict(client, REGRESSOR, {"celsius": -40}).json()["outputs"] == {"values": MINUS_40}
    refused = predict(client, REGRESSOR, {"celsius": -300})  # below absolute zero
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "input_payload.celsius"


def test_predict_answers_a_text_classifiers_label(client: httpx.Client) -> None:
    good = predict(client, TEXT, {"text": "great and good"})
    assert good.status_code == 200, good.text
    outputs = good.json()["outputs"]
    assert outputs["label"] == "good" and set(outputs["scores"]) == {"bad", "good"}
    assert outputs["scores"]["good"] > outputs["scores"]["bad"]
    bad = predict(client, TEXT, {"text": "Awful, POOR and bad"})  # lower-cased by the tokenizer
    assert bad.json()["outputs"]["label"] == "bad"


def test_predict_refuses_a_text_over_its_length_naming_the_field(client: httpx.Client) -> None:
    long = predict(client, TEXT, {"text": "g" * (MAX_TEXT + 1)})
    assert long.status_code == 422, long.text
    detail = long.json()["error"]["details"][0]
    assert detail["field"] == "input_payload.text" and str(MAX_TEXT) in detail["message"]
    assert predict(client, TEXT, {"text": "g" * MAX_TEXT}).status_code == 200  # the bound itself


def test_model_descriptions_follow_the_task(client: httpx.Client) -> None:
    regressor = client.get(f"/models/{REGRESSOR}").json()
    assert regressor["task"] == "tabular-regression" and regressor["labels"] == []
    values = regressor["output_schema"]["properties"]["values"]
    assert values["required"] == ["fahrenheit", "kelvin"]
    assert values["additionalProperties"] is False
    assert "°F" in values["properties"]["fahrenheit"]["description"]
    assert "Absolute temperature." in values["properties"]["kelvin"]["description"]
    assert "K" in values["properties"]["kelvin"]["description"]
    text = client.get(f"/models/{TEXT}").json()
    assert text["task"] == "text-classification" and text["labels"] == ["bad", "good"]
    assert text["input_schema"]["properties"]["text"]["maxLength"] == MAX_TEXT
    assert text["output_schema"]["properties"]["label"]["enum"] == ["bad", "good"]


def test_openapi_documents_each_models_request_and_response(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    def resolve(ref: str) -> dict[str, Any]:
        found: dict[str, Any] = schemas[ref.removeprefix("#/components/schemas/")]
        return found

    operation = document["paths"]["/predict"]["post"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    mapping = answer["discriminator"]["mapping"]
    assert answer["discriminator"]["propertyName"] == "model"
    assert set(mapping) == {"iris", "digits", "langid", REGRESSOR, TEXT}
    regressor = resolve(mapping[REGRESSOR])
    assert regressor["properties"]["model"]["const"] == REGRESSOR
    outputs = resolve(regressor["properties"]["outputs"]["$ref"])
    assert outputs["required"] == ["values"]
    values = outputs["properties"]["values"]
    assert {n: p["type"] for n, p in values["properties"].items()} == {
        "fahrenheit": "number",
        "kelvin": "number",
    }
    assert values["required"] == ["fahrenheit", "kelvin"]
    assert values["properties"]["fahrenheit"]["description"] == "Unit: °F."
    assert values["properties"]["kelvin"]["description"] == "Absolute temperature. Unit: K."
    text_outputs = resolve(resolve(mapping[TEXT])["properties"]["outputs"]["$ref"])
    assert text_outputs["properties"]["label"]["enum"] == ["bad", "good"]
    assert text_outputs["properties"]["scores"]["required"] == ["bad", "good"]

    # The request side: the text field is a bounded string.
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    text_request = resolve(request["discriminator"]["mapping"][TEXT])
    text_inputs = resolve(text_request["properties"]["input_payload"]["$ref"])
    assert text_inputs["properties"]["text"]["type"] == "string"
    assert text_inputs["properties"]["text"]["maxLength"] == MAX_TEXT
    assert text_inputs["required"] == ["text"]

    # The documented answer is the one given, and the other task's outputs are not.
    check = jsonschema_rs.validator_for({**answer, "components": {"schemas": schemas}})
    given = predict(client, REGRESSOR, {"celsius": 100}).json()
    assert check.is_valid(given)
    assert check.is_valid(predict(client, TEXT, {"text": "fine"}).json())
    assert check.is_valid(predict(client, "iris", {**IRIS}).json())
    assert not check.is_valid({**given, "outputs": {"label": "good", "scores": {"good": 1.0}}})
    assert not check.is_valid({**given, "outputs": {"values": {"fahrenheit": 212.0}}})


IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


# -- OIP with JSON bodies written by hand ----------------------------------------------------------


def test_oip_metadata_lists_the_tensors_of_each_task(client: httpx.Client) -> None:
    regressor = client.get(f"/v2/models/{REGRESSOR}").json()
    assert regressor["inputs"] == [{"name": "celsius", "datatype": "FP32", "shape": [-1, 1]}]
    assert regressor["outputs"] == [
        {"name": "fahrenheit", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "kelvin", "datatype": "FP32", "shape": [-1, 1]},
    ]
    text = client.get(f"/v2/models/{TEXT}").json()
    assert text["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    assert text["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 2]},
    ]


def test_oip_infer_a_regressor_gives_one_tensor_per_output(client: httpx.Client) -> None:
    answer = infer(client, REGRESSOR, {"id": "temps", "inputs": [celsius(100, -40)]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "temps" and body["model_name"] == REGRESSOR
    assert [o["name"] for o in body["outputs"]] == ["fahrenheit", "kelvin"]
    found = outputs_by_name(body)
    assert found["fahrenheit"] == {
        "name": "fahrenheit",
        "datatype": "FP32",
        "shape": [2, 1],
        "data": [212.0, -40.0],
    }
    assert found["kelvin"]["shape"] == [2, 1] and found["kelvin"]["data"] == [373.15, 233.15]
    # All its fields are numbers, so the combined `input` tensor is taken too.
    combined = {"name": "input", "datatype": "FP32", "shape": [1, 1], "data": [100]}
    again = infer(client, REGRESSOR, {"inputs": [combined]}).json()
    assert outputs_by_name(again)["kelvin"]["data"] == [373.15]


def test_oip_infer_honours_the_outputs_asked_for(client: httpx.Client) -> None:
    body = {"inputs": [celsius(100)], "outputs": [{"name": "kelvin"}]}
    answer = infer(client, REGRESSOR, body).json()
    assert answer["outputs"] == [
        {"name": "kelvin", "datatype": "FP32", "shape": [1, 1], "data": [373.15]}
    ]
    # In the order asked for.
    body["outputs"] = [{"name": "kelvin"}, {"name": "fahrenheit"}]
    assert [o["name"] for o in infer(client, REGRESSOR, body).json()["outputs"]] == [
        "kelvin",
        "fahrenheit",
    ]
    # A classifier's tensor names mean nothing to a regressor, and the reverse.
    body["outputs"] = [{"name": "label"}]
    assert_oip_error(infer(client, REGRESSOR, body), 400, "label", REGRESSOR)
    wrong = {"inputs": [texts("good")], "outputs": [{"name": "kelvin"}]}
    assert_oip_error(infer(client, TEXT, wrong), 400, "kelvin", TEXT)
    just_label = {"inputs": [texts("good")], "outputs": [{"name": "label"}]}
    assert infer(client, TEXT, just_label).json()["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [1, 1], "data": ["good"]}
    ]


def test_oip_infer_takes_text_as_bytes_strings(client: httpx.Client) -> None:
    body = {"inputs": [texts("great and good", "awful, poor\nand bad", "fine")]}
    answer = infer(client, TEXT, body)
    assert answer.status_code == 200, answer.text
    found = outputs_by_name(answer.json())
    assert found["label"]["data"] == ["good", "bad", "good"]
    assert found["scores"]["shape"] == [3, 2]
    # One value per row as shape [n] is taken as [n, 1], as for numbers.
    flat = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["good"]}
    assert outputs_by_name(infer(client, TEXT, {"inputs": [flat]}).json())["label"]["data"] == [
        "good"
    ]
    # A number is no text.
    number = {"name": "text", "datatype": "BYTES", "shape": [1, 1], "data": [5]}
    assert_oip_error(infer(client, TEXT, {"inputs": [number]}), 400, "BYTES data must be strings")
    fp32 = {"name": "text", "datatype": "FP32", "shape": [1, 1], "data": [5.0]}
    assert_oip_error(infer(client, TEXT, {"inputs": [fp32]}), 400, "'text'", "BYTES")


def test_oip_refuses_a_text_over_its_length_naming_the_field_and_row(
    client: httpx.Client,
) -> None:
    one = infer(client, TEXT, {"inputs": [texts("g" * (MAX_TEXT + 1))]})
    message = assert_oip_error(one, 400, "text", str(MAX_TEXT))
    assert message.startswith("text: ")
    batch = infer(client, TEXT, {"inputs": [texts("good", "g" * (MAX_TEXT + 1))]})
    assert_oip_error(batch, 400, "row 1: text", str(MAX_TEXT), "no row of the batch was run")
    empty = infer(client, TEXT, {"inputs": [texts("")]})
    assert_oip_error(empty, 400, "text: ")


# -- OIP through Triton's own client ---------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infers_a_regressor_by_output_name(
    triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    tensor = triton.InferInput("celsius", [2, 1], "FP32")
    tensor.set_data_from_numpy(np.array([[100.0], [-40.0]], dtype=np.float32), binary_data=binary)
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary) for name in ("fahrenheit", "kelvin")
    ]
    result = triton_client.infer(REGRESSOR, [tensor], outputs=outputs)
    fahrenheit, kelvin = result.as_numpy("fahrenheit"), result.as_numpy("kelvin")
    assert fahrenheit is not None and kelvin is not None
    assert fahrenheit.shape == (2, 1) and fahrenheit.dtype == np.float32
    np.testing.assert_array_equal(fahrenheit, np.array([[212.0], [-40.0]], dtype=np.float32))
    np.testing.assert_array_equal(kelvin, np.array([[373.15], [233.15]], dtype=np.float32))
    # The client's default (every output, as binary), and one output asked for.
    default = triton_client.infer(REGRESSOR, [tensor])
    assert default.as_numpy("kelvin") is not None and default.as_numpy("fahrenheit") is not None
    only = triton_client.infer(
        REGRESSOR, [tensor], outputs=[triton.InferRequestedOutput("kelvin", binary_data=binary)]
    )
    assert only.as_numpy("fahrenheit") is None and only.as_numpy("kelvin") is not None
    with pytest.raises(InferenceServerException, match="scores"):
        triton_client.infer(
            REGRESSOR, [tensor], outputs=[triton.InferRequestedOutput("scores", binary_data=binary)]
        )


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_sends_text_as_bytes(
    triton_client: triton.InferenceServerClient, binary: bool
) -> None:
    tensor = triton.InferInput("text", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[b"good great"]], dtype=object), binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "scores")]
    result = triton_client.infer(TEXT, [tensor], outputs=outputs)
    label, scores = result.as_numpy("label"), result.as_numpy("scores")
    assert label is not None and scores is not None
    # (binary BYTES come back as bytes, JSON ones as str)
    value = label.reshape(-1)[0]
    assert (value.decode() if isinstance(value, bytes) else value) == "good"
    assert scores.shape == (1, 2) and scores[0, 1] > scores[0, 0]

    # A batch, non-ASCII text included (UTF-8 both ways), in one BYTES tensor.
    rows = np.array([["bad café"], ["fine, good"], ["poor — awful"]], dtype=object)
    batch = triton.InferInput("text", [3, 1], "BYTES")
    batch.set_data_from_numpy(rows, binary_data=binary)
    labels = triton_client.infer(TEXT, [batch]).as_numpy("label")
    assert labels is not None
    assert [x.decode() if isinstance(x, bytes) else x for x in labels.reshape(-1)] == [
        "bad",
        "good",
        "bad",
    ]

    long = triton.InferInput("text", [1, 1], "BYTES")
    long.set_data_from_numpy(np.array([[b"g" * (MAX_TEXT + 1)]], dtype=object), binary_data=binary)
    with pytest.raises(InferenceServerException, match=rf"text: .*{MAX_TEXT}"):
        triton_client.infer(TEXT, [long])


def test_tritonclient_reads_metadata_and_configuration(
    triton_client: triton.InferenceServerClient,
) -> None:
    assert triton_client.is_model_ready(REGRESSOR) and triton_client.is_model_ready(TEXT)
    text = triton_client.get_model_metadata(TEXT)
    assert text["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
    config = triton_client.get_model_config(TEXT)
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}]
    regressor = triton_client.get_model_config(REGRESSOR)
    assert regressor["output"] == [
        {"name": "fahrenheit", "data_type": "TYPE_FP32", "dims": [1]},
        {"name": "kelvin", "data_type": "TYPE_FP32", "dims": [1]},
    ]
    index = {m["name"] for m in triton_client.get_model_repository_index()}
    assert {REGRESSOR, TEXT} <= index


# -- the desktop app's remote forms, pointed at the service ----------------------------------------


def remote_form(
    url: str, protocol: str, model: str, payload: dict[str, Any]
) -> tuple[RemoteForm, Any]:
    """The form the app builds for `model` on the service, and the answer to `payload` sent
    through it (validated by the form first, as the Predict view does)."""

    async def scenario() -> tuple[RemoteForm, Any]:
        target = Target(name="serve", base_url=url, protocol=protocol, model=model)
        client = TargetClient(target)
        try:
            fetch = fetch_oip_form if protocol == "oip" else fetch_inferdeck_form
            form = await fetch(client)
            form.inputs.model_validate(payload)
            answer = await send_prediction(client, adapter_for(target, form), payload, db=None)
            assert answer.status == "ok", answer.error
            return form, answer.answer
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_remote_forms_for_a_text_model_take_a_bounded_string(server: ServeProcess) -> None:
    form, answer = remote_form(server.url, "inferdeck", TEXT, {"text": "great and good"})
    (field,) = form.fields
    assert (field.name, field.type) == ("text", "text")
    assert "numbers" not in field.description  # a text box, not a list of numbers
    assert form.labels == ("bad", "good")
    assert answer["outputs"]["label"] == "good"
    with pytest.raises(ValidationError, match=str(MAX_TEXT)):  # refused as it is typed
        form.inputs.model_validate({"text": "g" * (MAX_TEXT + 1)})

    form, answer = remote_form(server.url, "oip", TEXT, {"text": "awful, poor"})
    (field,) = form.fields
    assert (field.name, field.type) == ("text", "text") and "BYTES" in field.description
    form.inputs.model_validate(form.example)  # it starts from a text the service takes
    assert outputs_by_name(answer)["label"]["data"] == ["bad"]


def test_remote_forms_for_a_regressor_send_and_read_its_values(server: ServeProcess) -> None:
    form, answer = remote_form(server.url, "inferdeck", REGRESSOR, {"celsius": 100})
    assert [(f.name, f.type) for f in form.fields] == [("celsius", "float")]
    assert form.labels == ()
    form.inputs.model_validate(form.example)  # it starts from a value the model takes
    assert answer["outputs"] == {"values": BOILING}
    with pytest.raises(ValidationError):
        form.inputs.model_validate({"celsius": -300})

    form, answer = remote_form(server.url, "oip", REGRESSOR, {"celsius": 100})
    assert [(f.name, f.type) for f in form.fields] == [("celsius", "float")]
    found = outputs_by_name(answer)
    assert {name: found[name]["data"] for name in BOILING} == {
        name: [value] for name, value in BOILING.items()
    }


# -- what the service stored, exported -------------------------------------------------------------


def test_export_csv_has_a_column_per_regression_output_and_the_text_input(
    server: ServeProcess, client: httpx.Client
) -> None:
    ids = {}
    for name, model, payload in (
        ("boiling", REGRESSOR, {"celsius": 100}),
        ("quoted", TEXT, {"text": 'good, "great"\nand fine'}),
        ("formula", TEXT, {"text": "=good"}),
    ):
        answer = predict(client, model, payload)
        assert answer.status_code == 200, answer.text
        ids[name] = answer.json()["request_id"]
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as conn:
        (run_id,) = conn.execute(
            "SELECT run_id FROM requests WHERE request_id = ?", (ids["boiling"],)
        ).fetchone()
    exported = run_cli(["export", run_id, "--format", "csv"], server.db)
    assert exported.code == 0, exported.stderr
    header = next(csv.reader(io.StringIO(exported.stdout)))
    assert [h for h in header if h.startswith("value.")] == ["value.fahrenheit", "value.kelvin"]
    assert "input.celsius" in header and "input.text" in header
    rows = {r["request_id"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    boiling = rows[ids["boiling"]]
    assert boiling["model"] == REGRESSOR and boiling["label"] == ""
    values = {k: float(boiling[f"value.{k}"]) for k in BOILING}
    assert values == BOILING and float(boiling["input.celsius"]) == 100
    assert boiling["score.good"] == "" and boiling["input.text"] == ""
    quoted = rows[ids["quoted"]]  # commas, quotes and a line break survive the round trip
    assert quoted["input.text"] == 'good, "great"\nand fine' and quoted["label"] == "good"
    assert quoted["value.kelvin"] == ""
    assert rows[ids["formula"]]["input.text"] == "'=good"  # never run as a formula
