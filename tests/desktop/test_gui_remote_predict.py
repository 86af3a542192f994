"""Predict on a remote OIP target from the Predict view: the form comes from a real `inferdeck
serve`'s `GET /v2/models/iris`, invalid input is caught inline, and the prediction sent through
it is stored (source `remote`, with client and server spans) before it is shown."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_on_qasync
from fault_server import closed_port
from live_server import LiveServer
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.models import ModelRegistry
from engine.remote.oip_form import form_from_oip
from engine.remote.protocols import OipInput
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
            assert view.remote_form is remote.form and not view.model_box.isEnabled()
            found["fields"] = list(view._fields)
            found["kinds"] = {n: type(f.editor).__name__ for n, f in view._fields.items()}

            # Inline validation from the metadata's datatypes, before anything is sent.
            view.set_values({**ROW, "sepal_length": "abc"})
            assert not view.predict_button.isEnabled()
            found["error"] = view._fields["sepal_length"].error.text()
            view.set_values(ROW)
            assert view.predict_button.isEnabled()

            view.submit()  # -> sigPredictRemote -> the target, stored, shown
            await wait_for(lambda: remote.answers == 1)
            found["label"] = view.label_text.text()
            found["request_text"] = view.request_text.text()
            found["stages"] = view.stages_text.text()
            role = view.scores_layout.ItemRole.LabelRole
            items = [
                view.scores_layout.itemAt(i, role) for i in range(view.scores_layout.rowCount())
            ]
            labels = [item.widget() if item is not None else None for item in items]
            found["scores"] = [w.text() if isinstance(w, QLabel) else None for w in labels]
            row_id = str(found["request_text"]).split()[1]
            found["row"] = await queries.get_request(db.reader, row_id)

            # Another protocol has no metadata to build a form from: said, and back to local.
            remote.source_box.setCurrentText("plain")
            await wait_for(lambda: "forms are built for OIP" in view.label_text.text())
            found["plain_form"] = view.remote_form
            remote.source_box.setCurrentText(LOCAL)
            await wait_for(lambda: set(view._fields) == local_fields)
            assert view.model_box.isEnabled()
        finally:
            await tasks.wait()
            await remote.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    assert found["fields"] == [*ROW, "input"]
    kinds = found["kinds"]
    assert isinstance(kinds, dict) and set(kinds.values()) == {"QLineEdit"}
    assert found["error"]  # "Input should be a valid number..." under the field
    assert found["label"] == "setosa"
    assert str(found["stages"]).startswith(tuple("0123456789"))
    # Every GUI prediction is traced: the client's phases, not one opaque wait.
    assert all(f" {phase} " in str(found["stages"]) for phase in ("connect", "send", "wait"))
    assert found["scores"] == ["label", "scores"]
    assert found["plain_form"] is None
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
            found["message"] = view.label_text.text()
            found["fields"] = list(view._fields)
        finally:
            await tasks.wait()
            await remote.aclose()
            await db.close()

    run_on_qasync(qapp, main())
    assert str(found["message"]).startswith("gone: cannot read http://127.0.0.1:")
    assert found["fields"] == local_fields


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
    assert [(f.name, f.type) for f in form.fields] == [
        ("input-0", "text"),
        ("flag", "enum"),
        ("count", "int"),
    ]
    ok = form.inputs.model_validate({"input-0": "1, 2.5, 3", "flag": "true", "count": "7"})
    assert ok.model_dump(by_alias=True, exclude_none=True) == {
        "input-0": [1.0, 2.5, 3.0],
        "flag": True,
        "count": 7,
    }
    with pytest.raises(ValueError, match="expected 3 values"):
        form.inputs.model_validate({"input-0": "1, 2", "flag": "false", "count": 1})
    with pytest.raises(ValueError, match="less than or equal to 255"):
        form.inputs.model_validate({"input-0": "1,2,3", "flag": "false", "count": 256})
    # With no scalar inputs, every tensor is required.
    only = form_from_oip("t", "m", [OipInput("pixels", "FP32", (-1, 2, 2))])
    with pytest.raises(ValueError, match="Field required"):
        only.inputs.model_validate({})
    assert summarize_outputs({"outputs": [{"name": "label", "data": ["cat"]}]}) == (
        "cat",
        [("label", "cat")],
    )
