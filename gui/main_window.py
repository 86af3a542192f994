"""The main window: targets on the left, views in tabs, live figures in the status bar.

Every main action is in the menu bar with its shortcut, so shortcuts can be discovered; the
window's geometry, splitters, current view and last model persist in QSettings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QShortcut,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QListWidget,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QWidget,
)

from engine.ingest import SUPPORTED_SUFFIXES
from engine.models.runtime import LoadedModel
from engine.stats import StatsSnapshot
from gui.history.requests_view import RequestsView
from gui.history.trace_view import TraceView
from gui.monitor.monitor_view import MonitorView
from gui.predict.drop_panel import DropPanel
from gui.predict.predict_view import PredictView
from gui.runs.runs_view import RunsView
from gui.shared.file_dialogs import file_dialog
from gui.shared.theme import CHOICES, Theme
from storage.database import is_database_file, is_live_database

SHORTCUTS = (
    ("Ctrl+Enter", "Predict with the form's inputs"),
    ("Ctrl+O", "Open files to run (or drop them on the window)"),
    ("Esc", "Cancel the running file job"),
    ("Ctrl+1 … Ctrl+5", "Predict, Requests, Trace, Monitor, Runs"),
    ("Ctrl+F", "Filter requests"),
    ("Enter", "Open the selected request's trace"),
    ("Ctrl+R", "Run the selected request again"),
    ("Ctrl+Shift+C", "Copy the trace as JSON"),
    ("F5", "Refresh runs"),
    ("Ctrl+E", "Export the selected run"),
    ("Ctrl+Q", "Quit (waits for pending writes)"),
    ("Ctrl+Shift+A / E / D / P", "Add, edit, remove or probe a remote target"),
    ("Ctrl+Shift+L", "Start the load run set in the Load tab"),
)


def settings() -> QSettings:
    return QSettings("InferDeck", "InferDeck")


class MainWindow(QMainWindow):
    """The window: tabs, menus, status bar, drops and closing; `gui.app.run_app` builds it."""

    sigCloseRequested = Signal()
    sigFilesDropped = Signal(list)  # list[Path], dropped anywhere on the window

    def __init__(self, models: list[LoadedModel], db_path: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("InferDeck")
        self.setObjectName("InferDeckMain")  # saveState() needs names
        self._closing_done = False
        self._db_path = db_path
        self._settings = settings()
        self.targets = QListWidget()
        self.targets.addItem("Local engine")
        self.targets.setCurrentRow(0)
        self.targets.setToolTip("Where requests go")
        self.predict_view = PredictView(models)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.predict_view, "Predict")
        self.drop_panel = DropPanel()
        self.right_splitter = QSplitter(Qt.Orientation.Vertical)
        self.right_splitter.addWidget(self.tabs)
        self.right_splitter.addWidget(self.drop_panel)
        self.right_splitter.setStretchFactor(0, 3)
        self.right_splitter.setStretchFactor(1, 1)
        self.main_splitter = QSplitter()
        self.main_splitter.addWidget(self.targets)
        self.main_splitter.addWidget(self.right_splitter)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setSizes([180, 900])
        self.setCentralWidget(self.main_splitter)

        self.model_state = QLabel("models: loading…")
        self.model_state.setToolTip("Models load in the background; the form works meanwhile")
        self.queue_state = QLabel("queue 0 · in flight 0")
        self.queue_state.setToolTip("Requests waiting in the engine's queue, and being run")
        self.rate_state = QLabel("0 req/s")
        self.rate_state.setToolTip("Completed requests per second, and their p99 latency")
        self.lag_state = QLabel("UI lag —")
        self.lag_state.setToolTip("How late the window's event loop ran over the last second")
        self.db_state = QLabel(f"db {db_path}")
        self.db_state.setToolTip("Every request, result and trace is stored here")
        for widget in (
            self.model_state,
            self.queue_state,
            self.rate_state,
            self.lag_state,
            self.db_state,
        ):
            self.statusBar().addPermanentWidget(widget)
        self.setAcceptDrops(True)
        cancel = QShortcut(QKeySequence("Esc"), self)
        cancel.activated.connect(self.drop_panel.sigCancel)
        self.setMinimumSize(960, 600)
        self.theme: Theme | None = None
        self._build_menus()
        geometry = self._settings.value("main/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 760)
        for key, splitter in (
            ("main/splitter", self.main_splitter),
            ("main/right_splitter", self.right_splitter),
        ):
            state = self._settings.value(key)
            if state is not None:
                splitter.restoreState(state)
        last_model = self._settings.value("predict/model")
        if isinstance(last_model, str) and last_model in {m.name for m in models}:
            self.predict_view.model_box.setCurrentText(last_model)

    # -- menus and shortcuts -----------------------------------------------------------------

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&Open files…", "Ctrl+O", self.choose_files)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", "Ctrl+Q", self.close)
        self.view_menu = self.menuBar().addMenu("&View")
        self.theme_menu = self.view_menu.addMenu("&Theme")
        self._theme_actions = QActionGroup(self)
        for choice in CHOICES:
            action = self.theme_menu.addAction(choice.capitalize())
            action.setCheckable(True)
            action.setData(choice)
            self._theme_actions.addAction(action)
        self._theme_actions.triggered.connect(
            lambda action: self.theme.choose(action.data()) if self.theme else None
        )
        self.view_menu.addSeparator()
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Keyboard shortcuts", "F1", self.show_shortcuts)

    def _action(self, menu: QMenu, text: str, keys: str, slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def use_theme(self, theme: Theme) -> None:
        self.theme = theme
        for action in self._theme_actions.actions():
            action.setChecked(action.data() == theme.choice)

    def _add_view(self, widget: QWidget, title: str) -> None:
        index = self.tabs.addTab(widget, title)
        self._action(
            self.view_menu,
            title,
            f"Ctrl+{index + 1}",
            lambda: self.tabs.setCurrentWidget(widget),
        )

    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>{what}</td></tr>" for k, what in SHORTCUTS)
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(f"<table cellspacing=6>{rows}</table>")
        box.open()  # never exec(): it would re-enter the qasync loop

    def choose_files(self) -> None:
        dialog = file_dialog(self, "Run files")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setNameFilter(
            "Inputs (*.json *.jsonl *.ndjson *.csv *.png *.jpg *.jpeg *.bmp *.gif *.webp "
            "*.tif *.tiff);;All files (*)"
        )
        dialog.filesSelected.connect(lambda names: self.drop_files([Path(n) for n in names]))
        dialog.open()

    # -- drops --------------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.drop_files(paths)

    def drop_files(self, paths: list[Path]) -> None:
        """Run dropped or chosen files, unless one of them is the database itself."""
        database_files = self.database_files(paths)
        if database_files:
            # Refused before anything opens it: reading the live database outside SQLite
            # would drop this process's locks on it (see storage.database).
            message = (
                f"{database_files[0].name} is the database InferDeck has open; it cannot be "
                "run as an input file. Nothing was read."
            )
            self.drop_panel.status.setText(message)
            self.statusBar().showMessage(message, 10000)
            return
        self.sigFilesDropped.emit(paths)

    def database_files(self, paths: list[Path]) -> list[Path]:
        """The live database's files among `paths` and the inputs inside dropped folders
        (only names and `stat` data are looked at)."""

        def is_db(path: Path) -> bool:
            return is_live_database(path) or is_database_file(path, self._db_path)

        found: list[Path] = []
        for path in paths:
            if path.is_dir():
                try:
                    inside = [p for p in path.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES]
                except OSError:
                    continue  # the job says the folder cannot be read
                found.extend(p for p in inside if is_db(p))
            elif is_db(path):
                found.append(path)
        return found

    # -- views that need the database -----------------------------------------------------------

    def add_views(self, requests: RequestsView, runs: RunsView) -> None:
        """Added once the database is open (they page from it)."""
        self.requests_view = requests
        self.trace_view = TraceView()
        self.monitor_view = MonitorView()
        self.runs_view = runs
        self._action(self.view_menu, "Predict", "Ctrl+1", lambda: self.tabs.setCurrentIndex(0))
        self._add_view(requests, "Requests")
        self._add_view(self.trace_view, "Trace")
        self._add_view(self.monitor_view, "Monitor")
        self._add_view(runs, "Runs")
        requests.sigOpen.connect(self.open_trace)
        focus_filter = QShortcut(QKeySequence("Ctrl+F"), self)
        focus_filter.activated.connect(self.focus_request_filter)
        copy_trace = QShortcut(QKeySequence("Ctrl+Shift+C"), self)
        copy_trace.activated.connect(self.trace_view.copy_json)
        if self.theme is not None:
            self.theme.sigThemeChanged.connect(self.monitor_view.set_dark)
            self.monitor_view.set_dark(self.theme.dark)
        tab = self._settings.value("main/tab")
        if isinstance(tab, (int, str)) and str(tab).isdigit():
            self.tabs.setCurrentIndex(int(tab))

    def add_targets_view(
        self, view: QWidget, actions: list[tuple[str, str, Callable[[], object]]]
    ) -> None:
        """The Targets tab, and a Targets menu (before Help) with its actions' shortcuts."""
        self.targets_view = view
        self._add_view(view, "Targets")
        menu = QMenu("&Targets", self)
        for text, keys, slot in actions:
            self._action(menu, text, keys, slot)
        self.menuBar().insertMenu(self.menuBar().actions()[-1], menu)

    def add_load_view(self, view: QWidget) -> None:
        """The Load tab: send traffic to a target and watch it (its plots are in Monitor)."""
        self.load_view = view
        self._add_view(view, "Load")

    def focus_request_filter(self) -> None:
        self.tabs.setCurrentWidget(self.requests_view)
        self.requests_view.text_edit.setFocus()
        self.requests_view.text_edit.selectAll()

    def open_trace(self, row: dict[str, object]) -> None:
        self.trace_view.show_request(row)
        self.tabs.setCurrentWidget(self.trace_view)

    # -- live figures ---------------------------------------------------------------------------

    def set_models_ready(self, names: list[str]) -> None:
        self.model_state.setText(f"models ready: {', '.join(names)}")

    def on_stats(self, snap: StatsSnapshot) -> None:
        self.queue_state.setText(f"queue {snap.queue_depth} · in flight {snap.in_flight}")
        self.rate_state.setText(f"{snap.throughput_per_s:,.0f} req/s · p99 {snap.p99_ms:.1f} ms")

    def show_lag(self, lag_ms: dict[str, float]) -> None:
        self.lag_state.setText(f"UI lag p99 {lag_ms['p99']:.1f} ms · max {lag_ms['max']:.0f} ms")

    def show_database_failure(self, error: Exception) -> None:
        """The database stopped taking writes (its files were changed under it): say so once,
        plainly, and keep the window usable for reading what is stored."""
        self.db_state.setText("db: writing stopped")
        self.db_state.setToolTip(str(error))
        self.statusBar().showMessage(str(error))
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Critical)
        box.setWindowTitle("Database changed under InferDeck")
        box.setText(str(error))
        box.open()  # never exec(): it would re-enter the qasync loop

    # -- closing --------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """The first close asks the app to drain and flush; the window closes once it has."""
        if self._closing_done:
            event.accept()
            return
        self._settings.setValue("main/geometry", self.saveGeometry())
        self._settings.setValue("main/splitter", self.main_splitter.saveState())
        self._settings.setValue("main/right_splitter", self.right_splitter.saveState())
        self._settings.setValue("main/tab", self.tabs.currentIndex())
        self._settings.setValue("predict/model", self.predict_view.model_box.currentText())
        event.ignore()
        self.sigCloseRequested.emit()

    def finish_close(self) -> None:
        self._closing_done = True
        self.close()
