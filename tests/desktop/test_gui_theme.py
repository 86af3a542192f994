"""Light and dark palettes: the user's choice wins over the system's, and persists."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication, QLabel
from pytestqt.qtbot import QtBot

from gui.load.load_live_chart import LoadLiveChart
from gui.monitor.monitor_view import MonitorView
from gui.shared.theme import Theme


def test_dark_and_light_palettes_and_plots_follow(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    theme = Theme(qapp, settings)
    monitor = MonitorView()
    chart = LoadLiveChart()  # the Load tab's own chart follows the theme as the Monitor does
    for plots in (monitor, chart):
        qtbot.addWidget(plots)
        theme.sigThemeChanged.connect(plots.set_dark)
    original = QPalette(qapp.palette())
    light_window = original.color(QPalette.ColorRole.Window)
    try:
        with qtbot.waitSignal(theme.sigThemeChanged) as changed:
            theme.choose("dark")
        assert changed.args == [True]
        assert qapp.palette().color(QPalette.ColorRole.Window).lightness() < 80
        # The plots are built on demand: made after the change, they take the dark colours.
        assert not monitor.built and not chart.built
        monitor.ensure_built()
        chart.show()  # shown, it builds itself
        assert chart.built
        for plots in (monitor, chart):
            assert plots._widgets[0].backgroundBrush().color().lightness() < 80
        assert settings.value("appearance/theme") == "dark"

        theme.choose("light")
        assert not theme.dark
        assert qapp.palette().color(QPalette.ColorRole.Window) == light_window
        for plots in (monitor, chart):
            assert plots._widgets[-1].backgroundBrush().color().lightness() > 200

        # "system" follows the platform's reported scheme (offscreen reports none: light).
        theme.choose("system")
        assert theme.choice == "system"
        assert not theme.dark
    finally:
        qapp.setPalette(original)
        monitor.stop()
        chart.stop()


def test_a_widget_with_its_own_style_sheet_follows_the_theme(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    # A heading that sets its own font by style sheet was drawn black on the dark window.
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    theme = Theme(qapp, settings)
    heading = QLabel("setosa")
    heading.setStyleSheet("font-size: 20px; font-weight: 600;")
    qtbot.addWidget(heading)
    heading.show()
    original = QPalette(qapp.palette())
    try:
        theme.choose("light")
        theme.choose("dark")
        assert heading.palette().color(QPalette.ColorRole.WindowText).lightness() > 180
        theme.choose("light")
        assert heading.palette().color(QPalette.ColorRole.WindowText).lightness() < 80
    finally:
        qapp.setPalette(original)
