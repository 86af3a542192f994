"""The main window's shell: menus with shortcuts, view switching, layout that persists, the side
pane of targets, the Files area, and the whole app present at its first paint."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import qasync
from live_server import free_port
from PySide6.QtCore import QEvent, QObject, QSize, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QSplitter, QWidget
from pytestqt.qtbot import QtBot
from qt_helpers import StubView, wait_for

from engine import startup
from engine.models import ModelRegistry
from engine.pipeline import Engine
from engine.remote.target_store import make_target
from engine.stats import StatsSnapshot
from gui.app import run_app
from gui.main_window import MainWindow, settings
from gui.side_pane import MIN_WIDTH


def _window(qtbot: QtBot) -> MainWindow:
    registry = ModelRegistry.discover()
    window = MainWindow([registry.models[n] for n in registry.names()], Path("x.db"))
    # The first close only asks the app to drain; finish_close() is the app's answer. Without
    # it the window stays open after the test, and its later deletion, with no other window
    # shown yet, quits the next test's app ("last window closed").
    qtbot.addWidget(window, before_close_func=lambda w: w.finish_close())
    return window


def test_every_main_action_has_a_shortcut_in_the_menus(qapp: QApplication, qtbot: QtBot) -> None:
    window = _window(qtbot)
    window.add_views(StubView(), StubView())  # type: ignore[arg-type]
    window.show()
    shortcuts = {
        action.text().replace("&", ""): action.shortcut().toString()
        for menu in window.menuBar().findChildren(type(window.view_menu))
        for action in menu.actions()
        if not action.isSeparator() and action.menu() is None
    }
    assert shortcuts["Open files…"] == "Ctrl+O"
    assert shortcuts["Quit"] == "Ctrl+Q"
    assert shortcuts["Keyboard shortcuts"] == "F1"
    views = ("Predict", "Requests", "Trace", "Monitor", "Runs")
    for i, name in enumerate(views, start=1):
        assert shortcuts[name] == f"Ctrl+{i}"

    # The offscreen platform never activates a window, so Qt delivers no shortcuts: trigger
    # the actions those shortcuts are bound to.
    actions = {a.text(): a for a in window.view_menu.actions()}
    actions["Monitor"].trigger()
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Monitor"
    actions["Runs"].trigger()
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Runs"
    assert window.predict_view.predict_button.toolTip()


def test_layout_and_last_view_persist(qapp: QApplication, qtbot: QtBot) -> None:
    first = _window(qtbot)
    first.add_views(StubView(), StubView())  # type: ignore[arg-type]
    first.show()
    qtbot.waitExposed(first)
    first.tabs.setCurrentIndex(3)
    first.main_splitter.setSizes([260, first.width() - 260])
    sizes = first.main_splitter.sizes()
    with qtbot.waitSignal(first.sigCloseRequested):
        first.close()  # the first close saves the layout and asks the app to drain
    second = _window(qtbot)
    second.add_views(StubView(), StubView())  # type: ignore[arg-type]
    second.show()
    qtbot.waitExposed(second)
    assert not second.restoreGeometry(b"") and second._settings.value("main/geometry")
    assert second.tabs.currentIndex() == 3
    # The side pane's width persists (the rest is the window's, clamped to the screen).
    assert second.main_splitter.sizes()[0] == sizes[0]


def test_a_remote_load_shows_its_rate_in_the_status_bar_then_the_local_one(
    qapp: QApplication, qtbot: QtBot
) -> None:
    window = _window(qtbot)
    window.add_views(StubView(), StubView())  # type: ignore[arg-type]
    local = StatsSnapshot(0.0, 12.0, 0.0, 1.0, 2.0, 3.5, 0, 0, 12, 0, {})
    window.on_stats(local)
    assert window.rate_state.text() == "12 req/s · p99 3.5 ms"
    window.show_load_rate(300.4, 41.25, True)
    window.on_stats(local)  # the local figures keep coming; the load's stay shown
    assert window.rate_state.text() == "load 300 req/s · p99 41.2 ms"
    window.show_load_rate(0.0, None, False)
    assert window.rate_state.text() == "12 req/s · p99 3.5 ms"


def test_the_side_pane_keeps_a_readable_width_whatever_was_saved(
    qapp: QApplication, qtbot: QtBot
) -> None:
    # The layout a squeezed side pane once saved: 70 px wide.
    squeezed = QSplitter()
    squeezed.addWidget(QWidget())
    squeezed.addWidget(QWidget())
    squeezed.resize(1200, 700)
    squeezed.setSizes([70, 1130])
    settings().setValue("main/splitter", squeezed.saveState())
    window = _window(qtbot)
    window.add_views(StubView(), StubView())  # type: ignore[arg-type]
    window.resize(1200, 760)
    window.show()
    qtbot.waitExposed(window)
    assert window.main_splitter.sizes()[0] >= MIN_WIDTH
    # A long name does not widen or squeeze it: it is elided, and whole in the tooltip.
    width = window.targets.width()
    window.targets.set_local_state("up", "a very long reason " * 40)
    qapp.processEvents()
    assert window.targets.width() == width
    assert window.width() == 1200
    assert "a very long reason" in window.targets.item(0).toolTip()


ROW = {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}
VIEWS = ["Predict", "Requests", "Trace", "Monitor", "Runs", "Targets", "Load", "Models"]


def stored_rows(db: Path, client_id: str) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM requests WHERE client_id = ?", (client_id,)
        ).fetchone()
    return int(count)


def test_the_app_is_whole_at_first_paint_and_follows_targets_and_file_jobs(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real app on a real database: every view and menu at the first paint while the
    models are still loading (held until the test has looked), a prediction made then waits
    for them; the side pane lists a saved target with its prober's state and scopes the views;
    the Files area appears with a file job and quitting during one asks; F1 lists every view's
    shortcut; every view fits 1024×700."""
    db = tmp_path / "app.db"
    rows = tmp_path / "rows.jsonl"
    rows.write_text((json.dumps(ROW) + "\n") * 200_000)
    gate = asyncio.Event()
    real_start = startup.start_engine

    async def held_start(engine: Engine) -> None:
        await gate.wait()  # the models stay "loading" until the first paint has been seen
        await real_start(engine)

    monkeypatch.setattr(startup, "start_engine", held_start)
    seen: dict[str, Any] = {}

    class FirstPaint(QObject):
        def eventFilter(self, obj: QObject, event: QEvent) -> bool:
            if (
                event.type() == QEvent.Type.Paint
                and isinstance(obj, MainWindow)
                and "tabs" not in seen
            ):
                seen["tabs"] = [obj.tabs.tabText(i) for i in range(obj.tabs.count())]
                seen["menus"] = [a.text().replace("&", "") for a in obj.menuBar().actions()]
                seen["models"] = obj.model_state.text()
                seen["files_visible"] = obj.files_area.isVisible()
                QTimer.singleShot(0, lambda: predict_early(obj))
            return False

    def predict_early(window: MainWindow) -> None:
        window.predict_view.sigPredict.emit("iris", dict(ROW))
        seen["said"] = window.statusBar().currentMessage()
        gate.set()

    async def drive(window: MainWindow) -> None:
        scopes: list[object] = []
        window.sigScopeChanged.connect(scopes.append)
        pane = window.targets
        assert "ready" in window.model_state.text()
        assert pane.states[None][0] == "up"

        # A saved target nobody answers at: listed with its state and reason, and choosing
        # it scopes the views to it.
        target = make_target(name="svc", base_url=f"http://127.0.0.1:{free_port()}")
        await window.targets_view.save(target)
        await wait_for(lambda: pane.names() == ["svc"])
        await wait_for(lambda: pane.states["svc"][0] == "down", 20)
        # In words in the pane, as the Targets table says it; the probe's terms in the tooltip.
        assert "connection refused" in pane.states["svc"][1]
        assert "down" in pane.item(1).text() and "connect_refused" not in pane.item(1).text()
        assert "connect_refused" in pane.item(1).toolTip()
        pane.select("svc")
        assert scopes == ["svc"]
        pane.select(None)
        assert scopes == ["svc", None]

        # F1 lists every view's shortcut (Targets and Load included) and every menu action.
        listed = dict(window.shortcuts())
        assert listed["Ctrl+6"] == "View › Targets" and listed["Ctrl+7"] == "View › Load"
        assert listed["Ctrl+Shift+A"] == "Targets › Add target"
        assert {"Ctrl+1", "Ctrl+5", "Ctrl+O", "Ctrl+Q", "F1", "Esc", "F5"} <= set(listed)
        window.show_shortcuts()
        assert "Ctrl+7" in window.shortcuts_box.text()
        window.shortcuts_box.close()

        # Every view fits 1024×700, and the window can be that small.
        window.resize(1024, 700)
        await wait_for(lambda: window.size() == QSize(1024, 700))
        for i in range(window.tabs.count()):
            window.tabs.setCurrentIndex(i)
            await asyncio.sleep(0.05)  # laid out (processEvents here would step tasks early)
            page = window.tabs.widget(i)
            assert page is not None
            hint, area = page.minimumSizeHint(), page.size()
            fits = hint.width() <= area.width() and hint.height() <= area.height()
            assert fits, (window.tabs.tabText(i), hint, area)
        assert window.size() == QSize(1024, 700)

        # The Files area: hidden until a job, shown while it runs, under the views.
        assert not window.files_area.isVisible()
        tabs_height = window.tabs.height()
        window.drop_files([rows])
        await wait_for(lambda: window.drop_panel.job_running)
        await wait_for(window.files_area.isVisible)
        assert window.tabs.height() < tabs_height
        window.close()  # a job runs: ask first, and keep running on "Keep running"
        question = window.quit_question
        assert question is not None and question.isVisible()
        question.button(QMessageBox.StandardButton.No).click()
        await wait_for(lambda: window.quit_question is None)
        assert window.isVisible() and window.drop_panel.job_running
        window.files_area.toggle.click()  # collapsed by the user to its one-line header
        assert not window.drop_panel.isVisible() and window.files_area.isVisible()
        await wait_for(lambda: stored_rows(db, "files") > 0, 60)  # a job to resume exists
        window.drop_panel.sigCancel.emit()
        await wait_for(lambda: not window.drop_panel.job_running, 30)
        # The stopped job can be resumed: the area opens on its Resume button, though the
        # user had collapsed it.
        await wait_for(window.drop_panel.resume_button.isVisible, 30)
        assert window.files_area.toggle.isChecked()

        # A bad row's request (here any stored one) opens in the Trace view.
        with sqlite3.connect(db) as conn:  # the early prediction, stored before its answer
            (stored_id,) = conn.execute(
                "SELECT request_id FROM requests WHERE source = 'form'"
            ).fetchone()
        window.drop_panel.sigOpenRequest.emit(stored_id)
        await wait_for(lambda: window.tabs.currentWidget() is window.trace_view)
        assert window.trace_view.row is not None
        assert window.trace_view.row["request_id"] == stored_id
        window.close()  # no job: no question
        seen["closed_without_question"] = window.quit_question is None

    app = QApplication.instance()
    assert app is not None
    first_paint = FirstPaint()
    app.installEventFilter(first_paint)
    try:
        qasync.run(run_app(db, None, drive))
    finally:
        app.removeEventFilter(first_paint)

    assert seen["tabs"] == VIEWS
    assert seen["menus"] == ["File", "View", "Targets", "Models", "Help"]
    assert "loading" in seen["models"]
    assert "models loading" in seen["said"]
    assert seen["files_visible"] is False
    assert seen["closed_without_question"]
    with sqlite3.connect(db) as conn:
        form = conn.execute("SELECT status FROM requests WHERE source = 'form'").fetchall()
    assert form == [("ok",)]  # the early prediction waited for the models, then ran


def test_a_failing_script_closes_the_app_and_its_failure_reaches_the_caller(
    qapp: QApplication, tmp_path: Path
) -> None:
    """`run_app`'s `on_ready` script raises: the window closes and `run_app` raises it, so a
    failing end-to-end test or screenshot tour fails instead of leaving a window open."""

    async def drive(window: MainWindow) -> None:
        await asyncio.sleep(0.05)
        raise LookupError("the script's own failure")

    with pytest.raises(LookupError, match="the script's own failure"):
        qasync.run(run_app(tmp_path / "app.db", None, drive))
