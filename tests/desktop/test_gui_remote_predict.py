"""Predict on a remote target from the Predict view: the form comes from a real `inferdeck
serve`'s `GET /v2/models/iris` (OIP) or `GET /models/iris` (inferdeck), starts from an example,
invalid input is caught inline, the prediction sent through it is stored (source `remote`, with
client and server spans) before it is shown with labelled score bars, and a refusal is a
message, not a result."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_on_qasync
from fault_server import closed_port
from live_server import LiveServer
from PySide6.QtWidgets import QApplication, QLabel, QLineEdit, QProgressBar
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.models import ModelRegistry
from engine.models.examples import model_example
from engine.remote.inferdeck_form import form_from_info, raw_form
from engine.remote.oip_form import form_from_oip
from engine.remote.protocols import OipInput, ProtocolError
from engine.remote.secrets import TokenStore
from engine.remote.target_store import TargetStore, make_target
from engine.server import ServerSettings
from engine.tasks import TaskOwner
from gui.predict.predict_view import PredictView
from gui.predict.remote_predict import LOCAL, RemotePredict, summarize_outputs
from storage import open_database, queries

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path_factory.mktemp("serve") / "serve.db"))
    live.start()
    yield live
    live.stop()


def _view(qtbot: QtBot) -> PredictView:
    registry = ModelRegistry.discover()
    view = PredictView([registry.models[n] for n in registry.names()])
    qtbot.addWidget(view)
    return view


def test_oip_form_from_a_real_server_and_a_prediction_through_it_is_stored(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path, served: LiveServer
) -> None:
    view = _view(qtbot)
    local_fields = set(view._fields)
    found: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "app.db")
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        remote = RemotePredict(view, db, tokens, tasks)
        try:
            store = TargetStore(db, tokens)
            await store.add(
                make_target(name="serve", base_url=served.url, protocol="oip", model="iris")
            )
            await store.add(make_target(name="plain", base_url=served.url))
            remote.set_targets(await store.list_all())
            names = [remote.source_box.itemText(i) for i in range(remote.source_box.count())]
            assert names == [LOCAL, "plain", "serve"]

            remote.source_box.setCurrentText("serve")
            await wait_for(lambda: remote.form is not None)
            assert view.remote_form is remote.form and not view.model_box.isVisibleTo(view)
            assert view.form_box.title() == "Inputs — iris on serve"
            found["fields"] = list(view._fields)
            found["kinds"] = {n: type(f.editor).__name__ for n, f in view._fields.items()}
            # It starts from an example the server accepts, with nothing marked red.
            found["example_valid"] = view.validate() is not None
            found["example_errors"] = [f.error.text() for f in view._fields.values()]

            # Inline validation from the metadata's datatypes, before anything is sent.
            view.set_values({**ROW, "sepal_length": "abc"})
            assert view.validate() is None
            found["error"] = view._fields["sepal_length"].error.text()
            view.set_values(ROW)
            assert view.validate() is not None and view.predict_button.isEnabled()

            view.submit()  # -> sigPredictRemote -> the target, stored, shown
            await wait_for(lambda: remote.answers == 1)
            found["label"] = view.label_text.text()
            found["request_text"] = view.request_text.text()
            found["stages"] = view.stages_text.text()
            found["scores"] = score_rows(view)
            row_id = str(found["request_text"]).split()[1]
            found["row"] = await queries.get_request(db.reader, row_id)

            # An inferdeck target with no model has nothing to read a form from: a message
            # (not a heading), and the previous result is gone.
            remote.source_box.setCurrentText("plain")
            await wait_for(lambda: "needs a model" in view.status_text.text())
            found["plain_form"] = view.remote_form
            found["plain_heading"] = view.label_text.text()
            found["plain_error"] = view.status_text.error
            found["plain_scores"] = view.scores_layout.rowCount()
            remote.source_box.setCurrentText(LOCAL)
            await wait_for(lambda: set(view._fields) == local_fields)
            assert view.model_box.isEnabled() and view.model_box.isVisibleTo(view)
            assert view.form_box.title() == "Inputs"
        finally:
            await tasks.wait()
            await remote.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    assert found["fields"] == [*ROW]  # the whole-row `input` tensor is not a field
    kinds = found["kinds"]
    assert isinstance(kinds, dict) and set(kinds.values()) == {"QLineEdit"}
    assert found["example_valid"] and found["example_errors"] == ["", "", "", ""]
    assert found["error"] == "enter a number"  # under the field
    assert found["label"] == "setosa"
    assert str(found["stages"]).startswith(tuple("0123456789"))
    # Every GUI prediction is traced: the client's phases, not one opaque wait.
    assert all(f" {phase} " in str(found["stages"]) for phase in ("connect", "send", "wait"))
    # OIP metadata names no classes: the scores tensor's bars are numbered.
    scores = found["scores"]
    assert isinstance(scores, list) and {name for name, _ in scores} == {
        "class 0",
        "class 1",
        "class 2",
    }
    assert scores[0][1] > 0.5  # the top class first, as a bar
    assert found["plain_form"] is None
    assert (found["plain_heading"], found["plain_error"], found["plain_scores"]) == ("", True, 0)
    row = found["row"]
    assert isinstance(row, dict)
    assert (row["source"], row["target"], row["model"], row["status"]) == (
        "remote",
        "serve",
        "iris",
        "ok",
    )
    assert json.loads(row["input"]) == ROW  # validated: numbers, not the form's text
    assert json.loads(row["output"])["outputs"][0]["data"] == ["setosa"]
    span_names = [s[0] for s in json.loads(row["spans"])]
    # (This service's OIP answers carry no Server-Timing, so the spans are the client's.)
    assert {"connect", "send", "wait", "receive"} <= set(span_names)
    meta = json.loads(row["metadata"])
    assert meta["http_status"] == 200
    # The server stored its side under the ID the client sent.
    with sqlite3.connect(served.db_path) as conn:
        server_side = conn.execute(
            "SELECT status, client_id FROM requests WHERE request_id = ?",
            (meta["server_request_id"],),
        ).fetchone()
    assert server_side == ("ok", "oip")
    assert row["request_id"] == meta["server_request_id"] + ".client"


def test_unreachable_target_says_why_and_keeps_the_local_form(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    view = _view(qtbot)
    local_fields = list(view._fields)
    found: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "app.db")
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        remote = RemotePredict(view, db, tokens, tasks)
        try:
            store = TargetStore(db, tokens)
            url = f"http://127.0.0.1:{closed_port()}"
            await store.add(make_target(name="gone", base_url=url, protocol="oip", model="iris"))
            remote.set_targets(await store.list_all())
            assert await remote.choose("gone") is None
            found["message"] = view.status_text.text()
            found["heading"] = view.label_text.text()
            found["error"] = view.status_text.error
            found["fields"] = list(view._fields)
        finally:
            await tasks.wait()
            await remote.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    assert str(found["message"]).startswith("gone: cannot read http://127.0.0.1:")
    assert found["heading"] == "" and found["error"] is True
    assert found["fields"] == local_fields


def score_rows(view: PredictView) -> list[tuple[str, float]]:
    """The Result box's score rows: (label, value) for each row that is a bar."""
    layout = view.scores_layout
    rows = []
    for i in range(layout.rowCount()):
        label = layout.itemAt(i, layout.ItemRole.LabelRole)
        field = layout.itemAt(i, layout.ItemRole.FieldRole)
        name, bar = label.widget() if label else None, field.widget() if field else None
        if isinstance(name, QLabel) and isinstance(bar, QProgressBar):
            rows.append((name.text(), bar.value() / 1000))
    return rows


def test_inferdeck_target_builds_a_form_and_shows_labelled_scores(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path, served: LiveServer
) -> None:
    view = _view(qtbot)
    local_fields = list(view._fields)
    found: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "app.db")
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        remote = RemotePredict(view, db, tokens, tasks)
        try:
            store = TargetStore(db, tokens)
            await store.add(make_target(name="deck", base_url=served.url, model="iris"))
            # A plain JSON URL: here the service's /predict, sent a body it refuses.
            await store.add(
                make_target(name="raw", base_url=f"{served.url}/predict", protocol="json")
            )
            # The side pane's contract; a target it names before this list has it is chosen
            # once it is listed.
            remote.use_target("deck")
            assert remote.source_box.currentText() == LOCAL
            remote.set_targets(await store.list_all())
            assert remote.source_box.currentText() == "deck"
            await wait_for(lambda: remote.form is not None)
            found["fields"] = list(view._fields)
            found["example_valid"] = view.validate() is not None
            found["example_errors"] = [f.error.text() for f in view._fields.values()]
            view.set_values({**ROW, "sepal_length": 99})  # the schema's range, inline
            found["range_error"] = view._fields["sepal_length"].error.text()
            view.set_values(ROW)
            view.submit()
            await wait_for(lambda: remote.answers == 1)
            found["heading"] = view.label_text.text()
            found["scores"] = score_rows(view)
            found["message_after_ok"] = view.status_text.text()

            remote.use_target("raw")
            await wait_for(lambda: remote.form is not None and remote.form.raw)
            found["raw_note"] = view.form_note.text() if view.form_note.isVisible() else ""
            found["raw_editor"] = type(view._fields["body"].editor).__name__
            view.set_values({"body": '{"model": "iris"}'})
            view.submit()
            await wait_for(lambda: remote.answers == 2)
            found["refused_heading"] = view.label_text.text()
            found["refused_message"] = view.status_text.text()
            found["refused_error"] = view.status_text.error
            found["refused_scores"] = view.scores_layout.rowCount()

            remote.use_target(None)
            assert remote.source_box.currentText() == LOCAL
            await wait_for(lambda: list(view._fields) == local_fields)
            found["local_enabled"] = view.model_box.isEnabled()
        finally:
            await tasks.wait()
            await remote.aclose()
            await db.close()

    view.show()
    run_on_qasync(qapp, main())
    assert found["fields"] == list(ROW)
    assert found["example_valid"] and found["example_errors"] == ["", "", "", ""]
    assert found["range_error"] == "at most 30"
    assert found["heading"] == "setosa"
    scores = found["scores"]
    assert isinstance(scores, list)
    assert scores[0][0] == "setosa"  # the top class first
    assert {name for name, _ in scores} == {"setosa", "versicolor", "virginica"}
    assert found["message_after_ok"] == ""
    assert "takes raw JSON" in str(found["raw_note"])
    assert found["raw_editor"] == "QPlainTextEdit"
    assert found["refused_heading"] == ""  # a refusal is not a result
    # In the server's words: its envelope's message, not the raw body.
    assert str(found["refused_message"]).startswith("raw refused it (HTTP 422): client_id:")
    assert found["refused_error"] is True and found["refused_scores"] == 0
    assert found["local_enabled"] is True


def test_an_inferdeck_form_starts_from_the_models_own_example(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path, served: LiveServer
) -> None:
    """The service offers each model's own example (its first held-out row) in `GET
    /models/{m}`: the remote form starts from it, as the local form does, not from the middle
    of each range; an image model's pixels too, as the text its field takes."""
    view = _view(qtbot)
    registry = ModelRegistry.discover()
    own = {
        name: model_example(registry.models[name].manifest, registry.models[name].folder)
        for name in ("iris", "digits")
    }
    found: dict[str, object] = {}

    def shown() -> dict[str, str]:
        texts = {}
        for name, field in view._fields.items():
            editor = field.editor
            assert isinstance(editor, QLineEdit)
            texts[name] = editor.text()
        return texts

    async def main() -> None:
        db = await open_database(tmp_path / "app.db")
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        remote = RemotePredict(view, db, tokens, tasks)
        try:
            store = TargetStore(db, tokens)
            await store.add(make_target(name="deck", base_url=served.url, model="iris"))
            await store.add(make_target(name="pixels", base_url=served.url, model="digits"))
            remote.set_targets(await store.list_all())
            remote.use_target("deck")
            await wait_for(lambda: remote.form is not None and remote.form.model == "iris")
            found["iris"] = shown()
            found["iris_valid"] = view.validate() is not None
            view.set_values({"sepal_length": "7"})
            view.fill_example()  # the Example button: the model's own example again
            found["iris_again"] = shown()
            view.submit()  # sent as it starts: the server takes it
            await wait_for(lambda: remote.answers == 1)
            found["iris_heading"] = view.label_text.text()

            remote.use_target("pixels")
            await wait_for(lambda: remote.form is not None and remote.form.model == "digits")
            found["digits"] = shown()
            found["digits_valid"] = view.validate() is not None
            view.submit()
            await wait_for(lambda: remote.answers == 2)
            found["digits_heading"] = view.label_text.text()
            found["digits_error"] = view.status_text.error
        finally:
            await tasks.wait()
            await remote.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    iris = own["iris"]
    assert iris == {
        "sepal_length": 5.1,
        "sepal_width": 2.5,
        "petal_length": 3.0,
        "petal_width": 1.1,
    }
    assert found["iris"] == {name: str(value) for name, value in iris.items()}
    assert found["iris_again"] == found["iris"] and found["iris_valid"]
    assert found["iris_heading"] == "versicolor"  # the held-out row's own label
    pixels = own["digits"]["image"]
    assert isinstance(pixels, list) and len(pixels) == 64
    assert found["digits"] == {"image": ", ".join(str(v) for v in pixels)}
    assert found["digits_valid"] and found["digits_error"] is False
    assert found["digits_heading"] == "9"


def test_a_form_starts_from_what_the_target_offers_else_from_the_schema() -> None:
    schema = {
        "properties": {
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "size": {"type": "number", "minimum": 0, "maximum": 10, "examples": [2.5]},
            "pixels": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["age", "size", "pixels"],
    }
    # An older service (no `example`): the schema's own examples, else the middle of a range.
    older = form_from_info("t", "m", {"labels": [], "input_schema": schema})
    assert older.example == {"age": 60, "size": 2.5}
    # The model's own example, a list field's as text; a value its schema refuses is not kept.
    offered = {"age": 130, "size": 1.5, "pixels": [[1, 2], [3, 4]]}
    own = form_from_info("t", "m", {"input_schema": schema, "example": offered})
    assert own.example == {"age": 60, "size": 1.5, "pixels": "1, 2, 3, 4"}
    assert own.inputs.model_validate(own.example)
    # Another service's schema-level `examples`.
    listed = {**schema, "examples": [{"age": 33, "size": 4.0, "pixels": [0.5]}]}
    other = form_from_info("t", "m", {"input_schema": listed})
    assert other.example == {"age": 33, "size": 4.0, "pixels": "0.5"}


def test_form_rules_for_tensor_shapes_and_datatypes() -> None:
    form = form_from_oip(
        "t",
        "m",
        [
            OipInput("input-0", "FP32", (-1, 3)),
            OipInput("flag", "BOOL", (-1, 1)),
            OipInput("count", "UINT8", (-1, 1)),
        ],
    )
    # With scalar inputs, a wider tensor is another way to send them: not a field.
    assert [(f.name, f.type) for f in form.fields] == [("flag", "enum"), ("count", "int")]
    assert len(form.tensors) == 3  # (the adapter still knows every tensor)
    ok = form.inputs.model_validate({"flag": "true", "count": "7"})
    assert ok.model_dump(by_alias=True, exclude_none=True) == {"flag": True, "count": 7}
    with pytest.raises(ValueError, match="less than or equal to 255"):
        form.inputs.model_validate({"flag": "false", "count": 256})
    assert form.inputs.model_validate(form.example)  # the example is valid
    # With no scalar inputs, every tensor is a required field.
    only = form_from_oip("t", "m", [OipInput("pixels", "FP32", (-1, 2, 2))])
    assert only.inputs.model_validate(only.example)
    with pytest.raises(ValueError, match="expected 4 values"):
        only.inputs.model_validate({"pixels": "1, 2"})
    with pytest.raises(ValueError, match="Field required"):
        only.inputs.model_validate({})
    answer = {
        "outputs": [
            {"name": "label", "data": ["cat"]},
            {"name": "scores", "data": [0.2, 0.8]},
            {"name": "extra", "data": [1, 2]},
        ]
    }
    assert summarize_outputs(answer, ("dog", "cat")) == (
        "cat",
        [("dog", 0.2), ("cat", 0.8)],
        [("extra", "1, 2")],
    )
    # An inferdeck model's schema: each property's kind, rules and example.
    info = {
        "labels": ["no", "yes"],
        "input_schema": {
            "properties": {
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "smoker": {"type": "boolean"},
                "colour": {"type": "string", "enum": ["red", "blue"]},
                "pixels": {"type": "array", "items": {"type": "number"}},
            },
            "required": ["age", "smoker", "colour", "pixels"],
        },
    }
    deck = form_from_info("t", "m", info)
    assert [(f.name, f.type, f.choices) for f in deck.fields] == [
        ("age", "int", None),
        ("smoker", "enum", ["false", "true"]),
        ("colour", "enum", ["red", "blue"]),
        ("pixels", "text", None),
    ]
    assert deck.labels == ("no", "yes")
    assert deck.example == {"age": 60, "smoker": False, "colour": "red"}
    with pytest.raises(ValueError, match="less than or equal to 120"):
        deck.inputs.model_validate({**deck.example, "age": 121, "pixels": "1"})
    checked = deck.inputs.model_validate({**deck.example, "smoker": "true", "pixels": "1, 2"})
    assert checked.model_dump(by_alias=True)["pixels"] == [1.0, 2.0]
    with pytest.raises(ProtocolError, match="no input schema"):
        form_from_info("t", "m", {"labels": []})
    raw = raw_form("j", None)
    assert raw.raw and raw.inputs.model_validate({"body": "[1, 2]"}).model_dump()["body"] == [1, 2]
    with pytest.raises(ValueError, match="not valid JSON"):
        raw.inputs.model_validate({"body": "{nope"})

    inferdeck = {"outputs": {"label": "b", "scores": {"a": 0.1, "b": 0.9}}}
    assert summarize_outputs(inferdeck) == ("b", [("a", 0.1), ("b", 0.9)], [])
    regressor = {"outputs": {"values": {"fahrenheit": 212.0, "kelvin": 373.15}}}
    assert summarize_outputs(regressor) == (
        "ok",
        [],
        [("fahrenheit", "212"), ("kelvin", "373.15")],
    )
    assert summarize_outputs([1, 2]) == ("ok", [], [("answer", "[1,2]")])
