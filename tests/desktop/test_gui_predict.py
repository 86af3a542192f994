"""The desktop app: the Predict form on its own, and the whole app started and auto-quit."""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from PIL import Image, ImageDraw
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLineEdit
from pytestqt.qtbot import QtBot

from engine.contracts import ErrorBody
from engine.models import ModelRegistry
from engine.models.examples import model_example
from engine.models.manifest import Manifest
from engine.work import Work
from gui.predict.predict_view import PredictView
from gui.shared.theme import dark_palette

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _view(qtbot: QtBot) -> PredictView:
    registry = ModelRegistry.discover()
    view = PredictView([registry.models[n] for n in registry.names()])
    qtbot.addWidget(view)
    view.model_box.setCurrentText("iris")
    return view


def test_form_follows_the_schema_and_shows_inline_errors(qtbot: QtBot) -> None:
    view = _view(qtbot)
    editors = {name: f.editor for name, f in view._fields.items()}
    assert set(editors) == set(SETOSA)
    assert all(isinstance(e, QLineEdit) for e in editors.values())
    assert "0 – 30" in editors["sepal_length"].placeholderText()  # type: ignore[attr-defined]
    view.set_values({**SETOSA, "sepal_length": "abc"})
    assert view._fields["sepal_length"].error.text() == "enter a number"
    assert view.validate() is None
    view.set_values({"sepal_length": 99})
    assert view._fields["sepal_length"].error.text() == "at most 30"
    view.set_values(SETOSA)
    assert view.validate() is not None and view.predict_button.isEnabled()
    assert all(not f.error.text() for f in view._fields.values())


def _texts(view: PredictView) -> dict[str, str]:
    return {n: f.editor.text() for n, f in view._fields.items()}  # type: ignore[attr-defined]


def test_form_starts_from_the_models_example_with_no_error_shown(qtbot: QtBot) -> None:
    view = _view(qtbot)
    # The first held-out row the model ships (engine/models/builtin/iris/heldout.csv).
    with (view.model.folder / "heldout.csv").open() as fh:
        row = next(csv.DictReader(fh))
    assert {n: float(v) for n, v in _texts(view).items()} == {n: float(row[n]) for n in SETOSA}
    assert all(not f.error.text() for f in view._fields.values())
    assert view.validate() is not None and view.predict_button.isEnabled()

    view.clear()  # empty, and still nothing is red until a field is touched or Predict
    assert set(_texts(view).values()) == {""}
    assert all(not f.error.text() for f in view._fields.values())
    with qtbot.assertNotEmitted(view.sigPredict):
        qtbot.mouseClick(view.predict_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    assert {f.error.text() for f in view._fields.values()} == {"required"}
    assert view.status_text.error and view.status_text.text()

    qtbot.mouseClick(view.example_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    assert {n: float(v) for n, v in _texts(view).items()} == {n: float(row[n]) for n in SETOSA}
    assert all(not f.error.text() for f in view._fields.values())

    # An image model's example is its held-out picture: the form is valid as it opens.
    view.model_box.setCurrentText("digits")
    assert view.validate() is not None
    assert "Example" in view._fields["image"].editor.text()  # type: ignore[attr-defined]


def test_without_held_out_rows_the_example_comes_from_the_manifest(tmp_path: Path) -> None:
    manifest = Manifest.model_validate(
        {
            "name": "m",
            "version": "1",
            "task": "tabular-classification",
            "inputs": [
                {"name": "a", "type": "float", "minimum": 0, "maximum": 10},
                {"name": "b", "type": "int", "default": 3},
                {"name": "c", "type": "enum", "choices": ["x", "y"]},
                {"name": "d", "type": "float"},  # no range, no default: left empty
            ],
            "labels": ["no", "yes"],
        }
    )
    assert model_example(manifest, tmp_path) == {"a": 5.0, "b": 3, "c": "x"}
    (tmp_path / "heldout.csv").write_text("a,b,c,d,label\n1.5,7,y,2,yes\n")
    assert model_example(manifest, tmp_path) == {"a": 1.5, "b": 7, "c": "y", "d": 2.0}


def test_an_error_shows_only_once_the_field_was_touched(qtbot: QtBot) -> None:
    view = _view(qtbot)
    view.show()
    view.activateWindow()
    qtbot.waitActive(view)
    editor = view._fields["petal_width"].editor
    assert isinstance(editor, QLineEdit)
    editor.setFocus()
    editor.selectAll()
    qtbot.keyClick(editor, Qt.Key.Key_Backspace)  # type: ignore[no-untyped-call]
    assert editor.text() == ""
    assert view._fields["petal_width"].error.text() == "required"
    assert all(not view._fields[n].error.text() for n in SETOSA if n != "petal_width")
    qtbot.keyClicks(editor, "x")  # type: ignore[no-untyped-call]
    assert view._fields["petal_width"].error.text() == "enter a number"

    # Leaving a field counts as touching it, even unchanged.
    view.clear()
    other = view._fields["sepal_width"].editor
    other.setFocus()
    qtbot.waitUntil(other.hasFocus)
    assert not view._fields["sepal_width"].error.text()
    editor.setFocus()  # focus leaves sepal_width
    qtbot.waitUntil(lambda: view._fields["sepal_width"].error.text() == "required")
    assert not view._fields["sepal_length"].error.text()  # never touched


def _failed(view: PredictView, message: str, spans: list[tuple[str, int, int]]) -> Work:
    return Work(
        request_id="r-2",
        run=None,  # type: ignore[arg-type]
        sink=None,  # type: ignore[arg-type]
        source="form",
        client_id="gui",
        model=view.model,
        features=None,
        priority=0,
        input_json=None,
        accepted_ns=0,
        created_us=0,
        spans=spans,
        status="rejected",
        output=None,
        latency_us=840,
        error=ErrorBody(code="invalid_input", message=message),
    )


def test_long_messages_never_move_the_columns(qtbot: QtBot) -> None:
    view = _view(qtbot)
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)

    def widths() -> tuple[int, int, int]:
        QApplication.processEvents()
        return (view.form_column.width(), view.result_box.width(), view.minimumSizeHint().width())

    before = widths()
    long = "input_payload.sepal_length: " + "this value is not what the model takes " * 40
    view.show_result(_failed(view, long, []))
    assert long in view.status_text.text() and view.label_text.text() == ""
    assert widths() == before
    view.show_result(_failed(view, "x" * 600, []))  # one unbroken word
    assert widths() == before
    ok = _failed(view, "", [(f"stage_{i}", i, 123456) for i in range(40)])
    ok.status, ok.error = "ok", None
    ok.output = {"label": "versicolor " * 30, "scores": {"setosa": 0.1, "versicolor": 0.9}}
    view.show_result(ok)
    assert "stage_39" in view.stages_text.text()
    assert widths() == before
    view.set_values({"sepal_length": "abc " * 200})  # a long field error
    assert view._fields["sepal_length"].error.text()
    assert widths() == before


def test_the_result_heading_reads_on_the_dark_theme(qapp: QApplication, qtbot: QtBot) -> None:
    light = QPalette(qapp.palette())
    qapp.setPalette(dark_palette())
    try:
        view = _view(qtbot)
        view.show()
        qtbot.waitExposed(view)
        ok = _failed(view, "", [])
        ok.status, ok.error = "ok", None
        ok.output = {"label": "virginica", "scores": {"virginica": 1.0}}
        view.show_result(ok)
        image = view.label_text.grab().toImage()
        lightest = max(
            image.pixelColor(x, y).lightness()
            for x in range(0, image.width(), 2)
            for y in range(image.height())
        )
        assert lightest > 160  # light text on the dark window (it was black: ~0)
        view.show_message("could not connect", error=True)
        colour = view.status_text.palette().color(QPalette.ColorRole.WindowText)
        assert colour.lightness() > 100 and colour.red() > colour.green()  # red, and readable
    finally:
        qapp.setPalette(light)


def test_ctrl_enter_sends_the_validated_payload(qtbot: QtBot) -> None:
    view = _view(qtbot)
    view.set_values(SETOSA)
    view.show()
    view.activateWindow()
    qtbot.waitActive(view)
    editor = view._fields["petal_width"].editor
    editor.setFocus()
    with qtbot.waitSignal(view.sigPredict, timeout=2000) as blocker:
        qtbot.keyClick(editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)  # type: ignore[no-untyped-call]
    model, payload = blocker.args
    assert model == "iris"
    assert {k: float(v) for k, v in payload.items()} == SETOSA


def test_result_panel_shows_label_scores_and_stages(qtbot: QtBot) -> None:
    view = _view(qtbot)
    work = Work(
        request_id="r-1",
        run=None,  # type: ignore[arg-type]
        sink=None,  # type: ignore[arg-type]
        source="form",
        client_id="gui",
        model=view.model,
        features=None,
        priority=0,
        input_json=None,
        accepted_ns=0,
        created_us=0,
        spans=[("validate", 0, 40), ("inference", 40, 300), ("write", 340, 500)],
        status="ok",
        output={"label": "setosa", "scores": {"setosa": 0.97, "versicolor": 0.03}},
        latency_us=840,
    )
    view.show_result(work)
    assert view.label_text.text() == "setosa"
    assert view.scores_layout.rowCount() == 2
    assert "inference 0.30" in view.stages_text.text()
    assert "r-1" in view.request_text.text()


def test_image_field_reads_a_picture(qtbot: QtBot, tmp_path: Path) -> None:
    view = _view(qtbot)
    view.model_box.setCurrentText("digits")
    img = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(img).line([(32, 8), (32, 56)], fill=0, width=8)
    png = tmp_path / "one.png"
    img.save(png)
    view.set_image("image", png)
    assert view.predict_button.isEnabled()
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    view.set_image("image", bad)
    assert "not a readable image" in view._fields["image"].error.text()


def _run_app(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


def test_app_starts_and_autoquits_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    proc = _run_app(["gui", "--db", str(db), "--autoquit", "2"], env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    with sqlite3.connect(db) as conn:
        runs = conn.execute("SELECT kind, status FROM runs").fetchall()
    assert runs == [("gui", "done")]  # the close drained and recorded the session


def test_without_a_display_the_app_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = ""
    proc = _run_app(["--help"], env)
    assert proc.returncode == 0
    proc = _run_app([], {**env, "INFERDECK_DB": str(tmp_path / "x.db")})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no display" in proc.stderr
