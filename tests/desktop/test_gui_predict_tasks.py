"""The Predict form for each task over a real engine and SQLite file: a regression's named
values with their units, a text model's text box (its count, its limit, Ctrl+Enter), and the
form rebuilt as the model changes between tasks."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import run_on_qasync
from model_folders import regression_folder, text_folder
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLineEdit, QProgressBar
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.contracts import PredictRequest
from engine.models import ModelRegistry
from engine.pipeline import Engine, Origin
from engine.runs import begin_run, end_run
from engine.tasks import TaskOwner
from engine.work import FutureSink
from gui.predict.predict_view import PredictView
from gui.shared.fields import TextArea
from storage import open_database

Scenario = Callable[[PredictView], Awaitable[None]]


@pytest.fixture(autouse=True)
def _garbage_collected_here() -> None:
    """Earlier tests' widgets are freed now, on the GUI thread: a collection that a worker
    thread (torch loading a model) triggered later would free them there, where Qt may wait
    on the GUI thread while it waits for the worker (a hang seen in the full suite)."""
    gc.collect()


def _registry(tmp_path: Path) -> ModelRegistry:
    models = tmp_path / "models"
    regression_folder(models / "temperature")
    text_folder(models / "review")
    return ModelRegistry.discover(models)


def _drive(qapp: QApplication, qtbot: QtBot, tmp_path: Path, scenario: Scenario) -> Path:
    """Run `scenario` on a Predict view whose Predict goes to a real engine (the app's wiring
    in small: `gui.app`'s `predict`), on a real database; returns the database's path."""
    db_path = tmp_path / "predict.db"
    registry = _registry(tmp_path)
    executor = ThreadPoolExecutor(max_workers=1)

    async def main() -> None:
        db = await open_database(db_path)
        engine = Engine(db, registry, executor)
        tasks = TaskOwner()
        try:
            await engine.start()
            run = await begin_run(db, "gui", {})
            origin = Origin(run, FutureSink(), "form", "gui")
            view = PredictView([registry.models[n] for n in registry.names()])
            qtbot.addWidget(view)
            view.resize(900, 640)
            view.show()

            async def predict(model: str, payload: dict[str, object]) -> None:
                request = PredictRequest(client_id="gui", model=model, input_payload=payload)
                view.show_result(await engine.predict(request, origin, acknowledge=True))

            view.sigPredict.connect(lambda m, p: tasks.spawn(predict(m, p), "form-predict"))
            await scenario(view)
            await tasks.wait()
            await end_run(db, run)
        finally:
            await engine.stop()
            await db.close()

    try:
        run_on_qasync(qapp, main())
    finally:
        executor.shutdown(wait=True)
    return db_path


def _rows(view: PredictView) -> dict[str, str]:
    return view.result_rows()


async def _predicted(view: PredictView) -> None:
    view.request_text.setText("")
    view.submit()
    await wait_for(lambda: view.request_text.text() != "" or view.status_text.error, 30)


def test_a_regression_answer_is_named_values_with_units(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    async def scenario(view: PredictView) -> None:
        view.model_box.setCurrentText("temperature")
        editors = {name: f.editor for name, f in view._fields.items()}
        assert list(editors) == ["celsius"] and isinstance(editors["celsius"], QLineEdit)
        view.set_values({"celsius": "100"})
        await _predicted(view)
        seen["heading"] = view.label_text.text()
        seen["rows"] = _rows(view)
        seen["bars"] = view.findChildren(QProgressBar)
        view.set_values({"celsius": "-40"})
        await _predicted(view)
        seen["minus_forty"] = _rows(view)

    db = _drive(qapp, qtbot, tmp_path, scenario)
    assert seen["rows"] == {"fahrenheit": "212 °F", "kelvin": "373.15 K"}
    assert seen["heading"] == "212 °F"
    assert seen["bars"] == []  # no class scores for a regression
    assert seen["minus_forty"] == {"fahrenheit": "-40 °F", "kelvin": "233.15 K"}
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT status FROM requests WHERE model = 'temperature'").fetchall()
    assert stored == [("ok",), ("ok",)]


def test_a_text_model_takes_its_text_in_a_box_and_answers_a_label(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    async def scenario(view: PredictView) -> None:
        view.model_box.setCurrentText("review")
        box = view._fields["text"].editor
        assert isinstance(box, TextArea) and box.max_length == 200
        assert not view.validate()  # empty: nothing to send, and no error shown yet
        assert not view._fields["text"].error.text()
        view.set_values({"text": "Great food,\nfine service.\nThe wait was bad."})
        seen["count"] = box.count.text()
        await _predicted(view)
        seen["label"] = view.label_text.text()
        seen["rows"] = _rows(view)
        # Ctrl+Enter in the box predicts, and adds no line break.
        view.activateWindow()
        box.edit.setFocus()
        before = box.text()
        view.request_text.setText("")
        qtbot.keyClick(box.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # type: ignore[no-untyped-call]
        await wait_for(lambda: view.request_text.text() != "", 30)
        seen["after_ctrl_enter"] = box.text() == before

    _drive(qapp, qtbot, tmp_path, scenario)
    assert seen["count"] == "43 / 200 characters"
    assert seen["label"] == "good"  # great, fine against bad
    rows = seen["rows"]
    assert isinstance(rows, dict) and set(rows) == {"good", "bad"}
    assert seen["after_ctrl_enter"] is True


def test_a_text_over_the_limit_is_refused_with_its_count(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    async def scenario(view: PredictView) -> None:
        view.model_box.setCurrentText("review")
        box = view._fields["text"].editor
        assert isinstance(box, TextArea)
        view.set_values({"text": "good " * 50})  # 250 characters, 50 past the limit
        seen["count"] = box.count.text()
        seen["count_red"] = box.count.error
        seen["field"] = view._fields["text"].error.text()
        sent: list[object] = []
        view.sigPredict.connect(lambda *args: sent.append(args))
        view.submit()
        await asyncio.sleep(0.1)
        seen["sent"] = list(sent)
        seen["status"] = view.status_text.text()
        view.set_values({"text": "good " * 40})  # 200: exactly the limit
        seen["at_limit"] = (box.count.error, view._fields["text"].error.text())
        await _predicted(view)
        seen["label"] = view.label_text.text()

    _drive(qapp, qtbot, tmp_path, scenario)
    assert seen["count"] == "250 / 200 characters — 50 too many" and seen["count_red"]
    assert seen["field"] == "too long: at most 200 characters (it has 250)"
    assert seen["sent"] == []
    assert seen["status"] == "Check the fields marked in red."
    assert seen["at_limit"] == (False, "")
    assert seen["label"] == "good"


def test_switching_models_between_tasks_rebuilds_the_form(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}

    def form(view: PredictView) -> list[tuple[str, str]]:
        return [(n, type(f.editor).__name__) for n, f in view._fields.items()]

    async def scenario(view: PredictView) -> None:
        view.model_box.setCurrentText("iris")
        await _predicted(view)  # a classifier's answer: label and bars
        seen["iris_bars"] = len(view.findChildren(QProgressBar))
        for name in ("review", "temperature", "digits", "review", "iris"):
            view.model_box.setCurrentText(name)
            await asyncio.sleep(0)
            seen[name] = form(view)
            # Another model's answer is not left under this one's form.
            seen[f"{name}_result"] = (view.label_text.text(), view.scores_layout.rowCount())
        # Only the current form's editors are alive in the view.
        seen["text_boxes"] = len(view.findChildren(TextArea))
        view.model_box.setCurrentText("temperature")
        view.set_values({"celsius": "0"})
        await _predicted(view)
        seen["zero"] = _rows(view)

    _drive(qapp, qtbot, tmp_path, scenario)
    assert seen["iris_bars"] == 3
    assert seen["review"] == [("text", "TextArea")]
    assert seen["temperature"] == [("celsius", "QLineEdit")]
    assert seen["digits"] == [("image", "QPushButton")]
    assert seen["iris"] == [(n, "QLineEdit") for n in ("sepal_length", "sepal_width")] + [
        (n, "QLineEdit") for n in ("petal_length", "petal_width")
    ]
    assert all(seen[f"{n}_result"] == ("", 0) for n in ("review", "temperature", "iris"))
    assert seen["text_boxes"] == 0
    assert seen["zero"] == {"fahrenheit": "32 °F", "kelvin": "273.15 K"}


def test_set_models_keeps_the_form_when_its_inputs_are_unchanged(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """A reload swaps the model list: the chosen model stays chosen with what was typed; a model
    that went is replaced by the first one's form."""
    registry = _registry(tmp_path)
    models = [registry.models[n] for n in registry.names()]
    view = PredictView(models)
    qtbot.addWidget(view)
    view.model_box.setCurrentText("temperature")
    view.set_values({"celsius": "37"})
    again = _registry(tmp_path / "again")
    view.set_models([again.models[n] for n in again.names()])
    assert view.model_box.currentText() == "temperature"
    assert view.model is again.models["temperature"]
    assert view.payload() == {"celsius": "37"}
    view.set_models([m for m in models if m.name != "temperature"])
    assert "temperature" not in view.model_names()
    assert view.model_box.currentText() == view.model_names()[0]
    assert set(view._fields) == {spec.name for spec in view.model.manifest.inputs}
