"""The desktop app: the Predict form on its own, and the whole app started and auto-quit."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import REPO
from PIL import Image, ImageDraw
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from engine.models import ModelRegistry
from engine.work import Work
from gui.predict.predict_view import PredictView

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
    assert not view.predict_button.isEnabled()  # everything is missing
    assert view._fields["sepal_width"].error.text() == "required"
    view.set_values({**SETOSA, "sepal_length": "abc"})
    assert "valid number" in view._fields["sepal_length"].error.text()
    view.set_values({"sepal_length": 99})
    assert "less than or equal to 30" in view._fields["sepal_length"].error.text()
    view.set_values(SETOSA)
    assert view.predict_button.isEnabled()
    assert all(not f.error.text() for f in view._fields.values())


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
