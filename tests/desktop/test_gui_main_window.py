"""The main window's shell: menus with shortcuts, view switching, layout that persists."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from qt_helpers import StubView

from engine.models import ModelRegistry
from gui.main_window import MainWindow


def _window(qtbot: QtBot) -> MainWindow:
    registry = ModelRegistry.discover()
    window = MainWindow([registry.models[n] for n in registry.names()], Path("x.db"))
    qtbot.addWidget(window)
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
    assert second.main_splitter.sizes() == sizes
