"""The Models view: built-in and user models with their task, outputs, score and check, broken
folders with their problem; Add (a Python file, a folder) through the real `inferdeck models add`
in a child process, usable by Predict at once; Reload of a folder added outside; Remove; a
failing add said in one line, never a traceback."""

from __future__ import annotations

import asyncio
import gc
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import qasync
from conftest import run_on_qasync
from model_folders import classifier_folder, regression_folder, text_folder, write_manifest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.models import ModelRegistry
from engine.tasks import TaskOwner
from gui.app import run_app
from gui.main_window import MainWindow
from gui.models.models_table_model import COLUMNS
from gui.models.models_view import ModelsView

# A user's model as a Python file (`inferdeck models add`'s contract): exact weights, so the
# answer is known: Celsius to Fahrenheit and Kelvin.
THERMO_PY = '''
"""Celsius to Fahrenheit and Kelvin, exactly."""
import torch
from torch import nn

MANIFEST = {
    "name": "thermo",
    "version": "2",
    "task": "tabular-regression",
    "description": "Celsius to Fahrenheit and Kelvin.",
    "inputs": [{"name": "celsius", "type": "float", "unit": "°C", "minimum": -273.15}],
    "outputs": [{"name": "fahrenheit", "unit": "°F"}, {"name": "kelvin", "unit": "K"}],
}
EXAMPLES = [{"celsius": 100.0}, {"celsius": -40.0}, {"celsius": 0.0}]


class Thermo(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 2)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.8], [1.0]]))
            self.linear.bias.copy_(torch.tensor([32.0, 273.15]))

    def forward(self, x):
        return self.linear(x)


def build():
    return Thermo()
'''

FAILING_PY = """
MANIFEST = {
    "name": "broken-build",
    "version": "1",
    "task": "tabular-regression",
    "inputs": [{"name": "x", "type": "float"}],
    "outputs": [{"name": "y"}],
}
EXAMPLES = [{"x": 1.0}]


def build():
    raise ValueError("the weights file is missing")
"""


@pytest.fixture(autouse=True)
def _garbage_collected_here() -> None:
    """Earlier tests' widgets are freed now, on the GUI thread: a collection that a worker
    thread (torch loading a model) triggered later would free them there, where Qt may wait
    on the GUI thread while it waits for the worker (a hang seen in the full suite)."""
    gc.collect()


def cells(view: ModelsView, name: str) -> dict[str, str]:
    model = view.table_model
    row = model.row_of(name)
    assert row >= 0, f"{name} is not listed"
    return {column: model.data(model.index(row, i)) for i, column in enumerate(COLUMNS)}


def tooltip(view: ModelsView, name: str, column: str) -> str:
    model = view.table_model
    index = model.index(model.row_of(name), COLUMNS.index(column))
    return str(model.data(index, Qt.ItemDataRole.ToolTipRole))


def test_the_table_lists_builtins_user_models_and_broken_folders(
    qtbot: QtBot, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    regression_folder(models / "temperature")
    text_folder(models / "review")
    # A manifest that contradicts its task, a folder without its artifact, and an artifact
    # that is not one: each is listed with what is wrong, where the models are.
    write_manifest(
        models / "mixed-up",
        {
            "name": "mixed",
            "version": "1",
            "task": "tabular-regression",
            "inputs": [{"name": "x", "type": "float"}],
            "labels": ["a", "b"],
        },
    )
    classifier_folder(models / "no-artifact", name="lonely")
    (models / "no-artifact" / "model.pt2").unlink()
    classifier_folder(models / "garbled", name="garbled")
    (models / "garbled" / "model.pt2").write_bytes(b"not a torch.export archive")
    registry = ModelRegistry.discover(models)

    async def reload() -> ModelRegistry:
        return registry

    view = ModelsView(TaskOwner(), reload)
    qtbot.addWidget(view)
    view.show_registry(registry)  # as the app first shows it: read, not loaded yet
    assert cells(view, "iris")["check"] == "loading…"
    assert not view.add_button.isEnabled() and not view.reload_button.isEnabled()
    registry.load_all()
    view.set_ready(registry)
    view.resize(1200, 700)
    view.show()

    iris = cells(view, "iris")
    assert iris["task"] == "tabular-classification" and iris["source"] == "built-in"
    assert iris["labels / outputs"] == "setosa, versicolor, virginica"
    assert iris["held-out"] == "accuracy 0.956" and iris["check"] == "ok"
    assert iris["inputs"] == "sepal_length, sepal_width, petal_length, petal_width"
    temperature = cells(view, "temperature")
    assert temperature["task"] == "tabular-regression" and temperature["source"] == "user"
    assert temperature["labels / outputs"] == "fahrenheit (°F), kelvin (K)"
    assert temperature["check"] == "ok" and temperature["folder"] == str(models / "temperature")
    review = cells(view, "review")
    assert review["task"] == "text-classification" and review["labels / outputs"] == "bad, good"

    mixed = cells(view, "mixed-up")  # its manifest cannot be read: named by its folder
    assert mixed["check"] == "model.json: a tabular-regression model needs at least one output"
    assert mixed["task"] == "—"
    assert "needs at least one output" in tooltip(view, "mixed-up", "check")
    lonely = cells(view, "lonely")  # readable, but no model.pt2
    assert lonely["check"] == "missing model.pt2" and lonely["task"] == "tabular-classification"
    garbled = cells(view, "garbled")
    # (Said by the registry: at discovery or at load, in its own words.)
    assert garbled["check"] not in ("ok", "loading…")
    assert garbled["task"] == "tabular-classification"
    total = len(registry.models)
    assert view.summary.text() == f"{total} models (2 the user's), 3 with a problem"
    # Built-ins first, then the user's, the broken ones last.
    rows = view.table_model.rows()
    builtins = total - 2
    assert {r.source for r in rows[:builtins]} == {"built-in"}
    assert [r.name for r in rows[builtins:]] == [
        "review",
        "temperature",
        "garbled",
        "lonely",
        "mixed-up",
    ]

    view.select("temperature")
    details = view.details.toPlainText()
    for words in ("tabular-regression", "celsius", "≥ -273.15", "°C", "Absolute temperature."):
        assert words in details, words
    assert view.remove_button.isEnabled()
    view.select("review")
    assert "≤ 200 characters" in view.details.toPlainText()
    view.select("iris")
    assert "Iris species" in view.details.toPlainText()
    assert not view.remove_button.isEnabled()  # a built-in stays
    view.select("mixed-up")
    assert "needs at least one output" in view.details.toPlainText()
    assert view.remove_button.isEnabled()  # a broken user folder can go too


def _write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return path


def test_a_failing_add_says_why_in_one_line(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("INFERDECK_MODELS_DIR", str(models))
    source = _write(tmp_path / "failing.py", FAILING_PY)
    reloads: list[int] = []

    async def reload() -> ModelRegistry:
        reloads.append(1)
        return ModelRegistry.discover()

    seen: dict[str, Any] = {}

    async def main() -> None:
        tasks = TaskOwner()
        view = ModelsView(tasks, reload)
        qtbot.addWidget(view)
        view.set_ready(ModelRegistry.discover())
        before = view.table_model.rowCount()
        task = view.add_source(source)
        assert task is not None and view.busy and not view.add_button.isEnabled()
        await task
        seen["status"] = view.status.text()
        seen["error"] = view.status.error
        seen["log"] = view.progress_log.toPlainText()
        seen["rows"] = (before, view.table_model.rowCount())
        seen["enabled"] = view.add_button.isEnabled() and view.reload_button.isEnabled()
        await tasks.wait()

    run_on_qasync(qapp, main())
    status = seen["status"]
    assert seen["error"] and status.startswith("Could not add failing.py: ")
    assert "the weights file is missing" in status and "failing.py: failing.py" not in status
    assert "\n" not in status and "Traceback" not in status
    assert "Traceback" not in seen["log"] and 'File "' not in seen["log"]
    assert seen["rows"][0] == seen["rows"][1] and reloads == []
    assert seen["enabled"]
    assert list(models.iterdir()) == []


def test_add_reload_predict_and_remove_in_the_running_app(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real app: a folder copied in from outside appears on Reload; a Python file and a
    folder added from the view are checked, listed and answer in Predict without a restart;
    a removed model leaves the table, Predict and the disk."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("INFERDECK_MODELS_DIR", str(models))
    thermo_py = _write(tmp_path / "thermo.py", THERMO_PY)
    review_src = text_folder(tmp_path / "src" / "review-folder")
    seen: dict[str, Any] = {}

    async def predict(window: MainWindow, model: str, values: dict[str, Any]) -> None:
        view = window.predict_view
        window.tabs.setCurrentWidget(view)
        view.model_box.setCurrentText(model)
        view.set_values(values)
        view.request_text.setText("")
        view.submit()
        await wait_for(lambda: view.request_text.text() != "" or view.status_text.error, 30)

    def values(window: MainWindow) -> dict[str, str]:
        return window.predict_view.result_rows()

    async def drive(window: MainWindow) -> None:
        view = window.models_view
        await wait_for(lambda: view.ready, 60)
        window.tabs.setCurrentWidget(view)
        seen["tab"] = window.tabs.tabText(window.tabs.currentIndex())
        assert view.table_model.row_of("thermo") < 0

        # A folder put there from outside (a terminal's `models add`): Reload takes it in.
        regression_folder(models / "temperature")
        task = view.reload_models()
        assert task is not None
        await task
        seen["reloaded"] = view.status.text()
        seen["temperature"] = cells(view, "temperature")
        await predict(window, "temperature", {"celsius": "100"})
        seen["temperature_answer"] = values(window)

        # Add from a Python file: progress, then the report; listed and usable at once.
        window.tabs.setCurrentWidget(view)
        task = view.add_source(thermo_py)
        assert task is not None
        await task
        seen["added"] = (view.status.text(), view.status.error)
        assert not view.status.error, view.progress_log.toPlainText()
        seen["log"] = view.progress_log.toPlainText()
        seen["thermo"] = cells(view, "thermo")
        chosen = view.selected()
        seen["selected"] = chosen.name if chosen is not None else None
        seen["predict_models"] = window.predict_view.model_names()
        box = window.requests_view.model_box
        seen["requests_models"] = [box.itemText(i) for i in range(box.count())]
        await predict(window, "thermo", {"celsius": "100"})
        seen["thermo_answer"] = values(window)

        # Add a folder (a text model): copied into the models folder, answers by its text box.
        task = view.add_source(review_src)
        assert task is not None
        await task
        seen["added_folder"] = (view.status.text(), view.status.error)
        assert not view.status.error, view.progress_log.toPlainText()
        seen["review"] = cells(view, "review")
        await predict(window, "review", {"text": "great and fine, not awful"})
        seen["review_answer"] = window.predict_view.label_text.text()

        # Remove: asked first; "Keep" keeps it, "Remove" removes it everywhere.
        window.tabs.setCurrentWidget(view)
        view.select("thermo")
        view.remove_model()
        assert view.confirm is not None
        view.confirm.button(QMessageBox.StandardButton.No).click()
        await asyncio.sleep(0.1)
        assert not view.busy and view.table_model.row_of("thermo") >= 0
        view.remove_model()
        assert view.confirm is not None
        view.confirm.button(QMessageBox.StandardButton.Yes).click()
        await wait_for(lambda: view.busy, 5)
        await wait_for(lambda: not view.busy, 120)
        seen["removed"] = (view.status.text(), view.status.error)
        seen["after_remove"] = view.table_model.row_of("thermo")
        seen["predict_after_remove"] = window.predict_view.model_names()
        seen["state"] = window.model_state.text()
        window.close()

    qasync.run(run_app(tmp_path / "app.db", None, drive))
    assert seen["tab"] == "Models"
    assert seen["reloaded"].startswith("Reloaded: ")
    assert seen["temperature"]["source"] == "user" and seen["temperature"]["check"] == "ok"
    assert seen["temperature_answer"] == {"fahrenheit": "212 °F", "kelvin": "373.15 K"}

    status, error = seen["added"]
    assert not error and status.startswith("Added thermo v2 (tabular-regression): 3 examples")
    assert "max difference" in status
    assert len(seen["log"].splitlines()) > 2  # the command's own progress lines came through
    assert seen["thermo"]["check"] == "ok" and seen["thermo"]["source"] == "user"
    assert seen["thermo"]["labels / outputs"] == "fahrenheit (°F), kelvin (K)"
    assert Path(seen["thermo"]["folder"]).parent == models
    assert seen["selected"] == "thermo"
    assert "thermo" in seen["predict_models"]
    assert "thermo" in seen["requests_models"]  # the Requests filter knows it too
    assert seen["thermo_answer"] == {"fahrenheit": "212 °F", "kelvin": "373.15 K"}

    status, error = seen["added_folder"]
    assert not error and status.startswith("Added review v1 (text-classification)")
    assert Path(seen["review"]["folder"]).parent == models
    assert seen["review_answer"] == "good"

    status, error = seen["removed"]
    assert not error and status.startswith("Removed thermo")
    assert seen["after_remove"] == -1
    assert "thermo" not in seen["predict_after_remove"]
    assert "thermo" not in seen["state"] and "temperature" in seen["state"]
    assert not any(
        json.loads((folder / "model.json").read_text())["name"] == "thermo"
        for folder in models.iterdir()
        if (folder / "model.json").is_file()
    )


def test_a_reload_swaps_models_under_requests_in_flight(qapp: QApplication, tmp_path: Path) -> None:
    """What Reload does to the engine (`Engine.replace_models`): requests accepted before the
    swap finish on the model they were accepted with, even one the new set no longer has; a
    request after it sees only the new set."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.contracts import PredictRequest
    from engine.pipeline import Engine, Origin
    from engine.runs import begin_run, end_run
    from engine.work import FutureSink
    from storage import open_database

    models = tmp_path / "models"
    regression_folder(models / "temperature")
    before = ModelRegistry.discover(models)
    after = ModelRegistry.discover()  # the folder went: built-ins only
    executor = ThreadPoolExecutor(max_workers=1)
    seen: dict[str, Any] = {}

    async def main() -> None:
        db = await open_database(tmp_path / "reload.db")
        engine = Engine(db, before, executor)
        try:
            await engine.start()
            run = await begin_run(db, "gui", {})
            origin = Origin(run, FutureSink(), "form", "gui")

            def ask(celsius: float) -> Any:
                request = PredictRequest(
                    client_id="gui", model="temperature", input_payload={"celsius": celsius}
                )
                return engine.predict(request, origin)

            in_flight = [asyncio.ensure_future(ask(float(c))) for c in range(200)]
            await asyncio.sleep(0)  # accepted (validated against the old set) before the swap
            await engine.replace_models(after)
            works = await asyncio.gather(*in_flight)
            seen["in_flight"] = {w.status for w in works}
            seen["hundred"] = works[100].output
            late = await ask(100.0)
            seen["late"] = (late.status, late.error.code if late.error else None)
            seen["registry"] = engine.registry is after
            await end_run(db, run)
        finally:
            await engine.stop()
            await db.close()

    try:
        run_on_qasync(qapp, main())
    finally:
        executor.shutdown(wait=True)
    assert seen["in_flight"] == {"ok"}
    assert seen["hundred"] == {"values": {"fahrenheit": 212.0, "kelvin": pytest.approx(373.15)}}
    assert seen["late"] == ("rejected", "unknown_model") and seen["registry"]


def test_an_add_can_be_cancelled(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel stops the child process: nothing is added, and the view says so in one line."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("INFERDECK_MODELS_DIR", str(models))
    slow = FAILING_PY.replace(
        'raise ValueError("the weights file is missing")', "import time; time.sleep(120)"
    )
    source = _write(tmp_path / "slow.py", slow)
    seen: dict[str, Any] = {}

    async def reload() -> ModelRegistry:
        return ModelRegistry.discover()

    async def main() -> None:
        tasks = TaskOwner()
        view = ModelsView(tasks, reload)
        qtbot.addWidget(view)
        view.set_ready(ModelRegistry.discover())
        task = view.add_source(source)
        assert task is not None and view.cancel_button.isVisibleTo(view)
        await wait_for(lambda: "building the module" in view.progress_log.toPlainText(), 60)
        view.cancel_button.click()
        await asyncio.wait_for(task, 20)
        seen["status"] = (view.status.text(), view.status.error)
        seen["busy"] = view.busy or view.cancel_button.isVisibleTo(view)
        await tasks.wait()

    run_on_qasync(qapp, main())
    assert seen["status"] == ("Could not add slow.py: cancelled", True)
    assert not seen["busy"]
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == []
