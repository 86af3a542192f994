"""The main window: targets on the left, views in tabs, the Files area under them while there
is a file job, live figures in the status bar.

Every main action is in the menu bar with its shortcut, and F1 lists every shortcut the window
and its views have registered (read from the actions themselves, so the list cannot go stale);
the window's geometry, splitter, current view and last model persist in QSettings.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
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
    QAbstractButton,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSizePolicy,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
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
from gui.side_pane import MIN_WIDTH, SidePane
from storage.database import is_database_file, is_live_database

if TYPE_CHECKING:
    from gui.models.models_view import ModelsView
    from gui.targets.targets_view import TargetsView

SIDE_WIDTH = 200  # the side pane's width on first launch


def settings() -> QSettings:
    return QSettings("InferDeck", "InferDeck")


class MainWindow(QMainWindow):
    """The window: tabs, menus, status bar, drops and closing; `gui.app.run_app` builds it."""

    sigCloseRequested = Signal()
    sigFilesDropped = Signal(list)  # list[Path], dropped anywhere on the window
    sigScopeChanged = Signal(object)  # the side pane's choice: a target's name, None: local

    def __init__(self, models: list[LoadedModel], db_path: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("InferDeck")
        self.setObjectName("InferDeckMain")  # saveState() needs names
        self._closing_done = False
        self._quit_confirmed = False
        self.quit_question: QMessageBox | None = None  # open while a file job makes us ask
        self.models_ready = False
        self._db_path = db_path
        self._settings = settings()
        self.targets = SidePane()
        self.targets.sigScopeChanged.connect(self.sigScopeChanged)
        self.predict_view = PredictView(models)
        self.predict_view.sigPredict.connect(self._predict_requested)
        # Trace and Monitor need no database: made here, added as tabs with the others.
        self.trace_view = TraceView()
        self.monitor_view = MonitorView()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.predict_view, "Predict")
        self.drop_panel = DropPanel()
        self.files_area = FilesArea(self.drop_panel)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(4)
        right_layout.addWidget(self.tabs, 1)  # every extra pixel of height goes to the views
        right_layout.addWidget(self.files_area, 0)
        self.main_splitter = QSplitter()
        self.main_splitter.setObjectName("main_splitter")
        self.main_splitter.addWidget(self.targets)
        self.main_splitter.addWidget(right)
        self.main_splitter.setCollapsible(0, False)
        self.main_splitter.setCollapsible(1, False)
        self.main_splitter.setStretchFactor(0, 0)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setSizes([SIDE_WIDTH, 1000])
        self.setCentralWidget(self.main_splitter)

        self.model_state = QLabel("models: loading…")
        self.model_state.setToolTip(
            "Models load in the background; a prediction made meanwhile waits for them"
        )
        self.queue_state = QLabel("queue 0 · in flight 0")
        self.queue_state.setToolTip("Requests waiting in the engine's queue, and being run")
        self.rate_state = QLabel("0 req/s")
        self.rate_state.setToolTip("Completed requests per second, and their p99 latency")
        self.lag_state = QLabel("UI lag —")
        self.lag_state.setToolTip("How late the window's event loop ran over the last second")
        self.db_state = QLabel(f"db {db_path.name}")
        self.db_state.setToolTip(f"Every request, result and trace is stored in {db_path}")
        self._local_rate = "0 req/s"
        self._load_running = False
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
        cancel.setWhatsThis("Cancel the running file job")
        cancel.activated.connect(self.drop_panel.sigCancel)
        self.drop_panel.sigActive.connect(self.files_area.job_active)
        self.drop_panel.sigResumeOffered.connect(self.files_area.resume_offered)
        self.setMinimumSize(960, 600)
        self.theme: Theme | None = None
        self._build_menus()
        geometry = self._settings.value("main/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 760)
        state = self._settings.value("main/splitter")
        if state is not None:
            self.main_splitter.restoreState(state)
            if self.main_splitter.sizes()[0] < MIN_WIDTH:
                # A side pane saved narrower than it can be read (a long label once squeezed
                # it to 70 px, and that stuck): start from the default width instead.
                self.main_splitter.setSizes([SIDE_WIDTH, max(self.width() - SIDE_WIDTH, 1)])
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
        self._action(self.view_menu, "Predict", "Ctrl+1", lambda: self.tabs.setCurrentIndex(0))
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

    def shortcuts(self) -> list[tuple[str, str]]:
        """Every shortcut registered now, as (keys, what it does): the menus' actions, the
        window's and views' QShortcuts, and buttons with a shortcut (read, never listed by
        hand, so a new view or action is listed the moment it exists)."""
        found: list[tuple[str, str]] = []

        def walk(menu: QMenu, where: str) -> None:
            for action in menu.actions():
                sub = action.menu()
                if isinstance(sub, QMenu):
                    walk(sub, f"{where} › {action.text().replace('&', '')}")
                elif not action.isSeparator() and not action.shortcut().isEmpty():
                    what = f"{where} › {action.text().replace('&', '').rstrip('…')}"
                    found.append((action.shortcut().toString(), what))

        for top in self.menuBar().actions():
            menu = top.menu()
            if isinstance(menu, QMenu):
                walk(menu, top.text().replace("&", ""))
        for shortcut in self.findChildren(QShortcut):
            if shortcut.isEnabled() and not shortcut.key().isEmpty():
                keys = shortcut.key().toString()
                found.append((keys, shortcut.whatsThis() or self._described(shortcut, keys)))
        for button in self.findChildren(QAbstractButton):
            if not button.shortcut().isEmpty():
                keys = button.shortcut().toString()
                what = button.toolTip().removesuffix(f" ({keys})") or button.text()
                found.append((keys, f"{self._tab_of(button)} › {what.replace('&', '')}"))
        return found

    def _described(self, shortcut: QShortcut, keys: str) -> str:
        """A QShortcut without its own words: the tooltip of the button it stands for (the
        views say "… (keys)" on it), or else the view it belongs to."""
        parent = shortcut.parent()
        where = self._tab_of(parent) if isinstance(parent, QWidget) else "Window"
        if isinstance(parent, QWidget):
            for widget in parent.findChildren(QWidget):
                tip = widget.toolTip()
                if tip.endswith(f"({keys})"):
                    return f"{where} › {tip.removesuffix(f'({keys})').strip()}"
        return where

    def _tab_of(self, widget: QWidget) -> str:
        for i in range(self.tabs.count()):
            page = self.tabs.widget(i)
            if page is not None and (page is widget or page.isAncestorOf(widget)):
                return self.tabs.tabText(i).replace("&", "")
        return "Window"

    def show_shortcuts(self) -> None:
        rows = "".join(
            f"<tr><td><b>{escape(keys)}</b></td><td>{escape(what)}</td></tr>"
            for keys, what in self.shortcuts()
        )
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(f"<table cellspacing=4>{rows}</table>")
        self.shortcuts_box = box
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
        self.runs_view = runs
        self._add_view(requests, "Requests")
        self._add_view(self.trace_view, "Trace")
        self._add_view(self.monitor_view, "Monitor")
        self._add_view(runs, "Runs")
        requests.sigOpen.connect(self.open_trace)
        focus_filter = QShortcut(QKeySequence("Ctrl+F"), self)
        focus_filter.setWhatsThis("Requests › Filter requests")
        focus_filter.activated.connect(self.focus_request_filter)
        copy_trace = QShortcut(QKeySequence("Ctrl+Shift+C"), self)
        copy_trace.setWhatsThis("Trace › Copy the trace as JSON")
        copy_trace.activated.connect(self.trace_view.copy_json)
        if self.theme is not None:
            self.theme.sigThemeChanged.connect(self.monitor_view.set_dark)
            self.monitor_view.set_dark(self.theme.dark)
        tab = self._settings.value("main/tab")
        if isinstance(tab, (int, str)) and str(tab).isdigit():
            self.tabs.setCurrentIndex(int(tab))

    def add_targets_view(
        self, view: TargetsView, actions: list[tuple[str, str, Callable[[], object]]]
    ) -> None:
        """The Targets tab, a Targets menu (before Help) with its actions' shortcuts, and the
        side pane following the saved targets and their probers."""
        self.targets_view = view
        self._add_view(view, "Targets")
        view.sigTargetsChanged.connect(self.targets.set_targets)
        view.host.sigSnapshots.connect(self.targets.on_snapshots)
        view.host.sigStateChanged.connect(self.targets.on_state_changed)
        view.host.sigRemoved.connect(self.targets.on_removed)
        menu = QMenu("&Targets", self)
        for text, keys, slot in actions:
            self._action(menu, text, keys, slot)
        self.menuBar().insertMenu(self.menuBar().actions()[-1], menu)

    def add_load_view(self, view: QWidget) -> None:
        """The Load tab: send traffic to a target and watch it (its plots are in Monitor)."""
        self.load_view = view
        self._add_view(view, "Load")

    def add_models_view(
        self, view: ModelsView, actions: list[tuple[str, str, Callable[[], object]]]
    ) -> None:
        """The Models tab, and a Models menu (before Help) with its actions' shortcuts."""
        self.models_view = view
        self._add_view(view, "Models")
        menu = QMenu("&Models", self)
        for text, keys, slot in actions:
            # The view shows what the action does (a dialog's result, progress, one line).
            def shown(act: Callable[[], object] = slot) -> None:
                self.tabs.setCurrentWidget(view)
                act()

            if keys:
                self._action(menu, text, keys, shown)
            else:
                menu.addAction(text, shown)
        self.menuBar().insertMenu(self.menuBar().actions()[-1], menu)
        tab = self._settings.value("main/tab")  # the last view, if it was this one
        if isinstance(tab, (int, str)) and str(tab) == str(self.tabs.indexOf(view)):
            self.tabs.setCurrentWidget(view)

    def focus_request_filter(self) -> None:
        self.tabs.setCurrentWidget(self.requests_view)
        self.requests_view.text_edit.setFocus()
        self.requests_view.text_edit.selectAll()

    def open_trace(self, row: dict[str, object]) -> None:
        self.trace_view.show_request(row)
        self.tabs.setCurrentWidget(self.trace_view)

    # -- live figures ---------------------------------------------------------------------------

    def set_models_ready(self, names: list[str], problems: int = 0) -> None:
        """The models are loaded and warm (at start, and after each reload); `problems`: how
        many model folders could not be used (the Models view says which and why)."""
        self.models_ready = True
        self.model_state.setText(f"models ready: {', '.join(names)}")
        tip = "Every model is loaded and warm"
        if problems:
            folders = f"{problems} model folder{'s' if problems > 1 else ''}"
            tip += f"; {folders} could not be used (see Models)"
        self.model_state.setToolTip(tip)
        self.targets.set_local_state("up", f"models ready: {len(names)}")

    def set_models_failed(self, message: str) -> None:
        self.model_state.setText("models did not load")
        self.model_state.setToolTip(message)
        self.targets.set_local_state("down", message)
        self.statusBar().showMessage(message)

    def _predict_requested(self, _model: str, _payload: dict[str, object]) -> None:
        if not self.models_ready:
            # The request waits in the engine's queue; say why nothing shows yet.
            self.statusBar().showMessage(
                "models loading… the prediction runs as soon as they are ready", 6000
            )

    def on_stats(self, snap: StatsSnapshot) -> None:
        self.queue_state.setText(f"queue {snap.queue_depth} · in flight {snap.in_flight}")
        self._local_rate = f"{snap.throughput_per_s:,.0f} req/s · p99 {snap.p99_ms:.1f} ms"
        if not self._load_running:
            self.rate_state.setText(self._local_rate)

    def show_load_rate(self, per_s: float, p99_ms: float | None, running: bool) -> None:
        """A remote load's figures in the status bar while it runs (the load host calls it);
        the local engine's again once it ends."""
        self._load_running = running
        if not running:
            self.rate_state.setText(self._local_rate)
            self.rate_state.setToolTip("Completed requests per second, and their p99 latency")
            return
        p99 = "—" if p99_ms is None else f"{p99_ms:.1f} ms"
        self.rate_state.setText(f"load {per_s:,.0f} req/s · p99 {p99}")
        self.rate_state.setToolTip("The running load's responses per second, and their p99")

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
        if self.drop_panel.job_running and not self._quit_confirmed:
            event.ignore()
            self._ask_before_quitting()
            return
        self._settings.setValue("main/geometry", self.saveGeometry())
        self._settings.setValue("main/splitter", self.main_splitter.saveState())
        self._settings.setValue("main/tab", self.tabs.currentIndex())
        self._settings.setValue("predict/model", self.predict_view.model_box.currentText())
        event.ignore()
        self.sigCloseRequested.emit()

    def _ask_before_quitting(self) -> None:
        """A file job is running: quitting stops it (a later drop resumes it); ask first."""
        if self.quit_question is not None:
            return
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Quit InferDeck?")
        box.setText("A file job is running. Quit and stop it?")
        box.setInformativeText("The rows done so far are kept; drop the file again to resume.")
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.button(QMessageBox.StandardButton.Yes).setText("Quit")
        box.button(QMessageBox.StandardButton.No).setText("Keep running")

        def answered(result: int) -> None:
            self.quit_question = None
            if result == QMessageBox.StandardButton.Yes:
                self._quit_confirmed = True
                self.close()

        box.finished.connect(answered)
        self.quit_question = box
        box.open()  # never exec(): it would re-enter the qasync loop

    def finish_close(self) -> None:
        self._closing_done = True
        self.close()


class FilesArea(QWidget):
    """The Files area under the views: hidden until a file job starts, then the job's panel
    under a header that collapses it to one line; it never takes the window's extra height."""

    def __init__(self, panel: DropPanel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.panel = panel
        self.toggle = QToolButton()
        self.toggle.setCheckable(True)
        self.toggle.setChecked(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow)
        self.toggle.setText("Files")
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Show or hide the file job's details")
        self.toggle.toggled.connect(self.set_expanded)
        self.summary = QLabel("")
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide the Files area until the next file job")
        self.close_button.clicked.connect(self.hide)
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.toggle)
        header.addWidget(self.summary, 1)
        header.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(header)
        layout.addWidget(panel)
        panel.setTitle("")  # the header's toggle says "Files" already
        panel.setMaximumHeight(220)  # a few problem rows; the views keep the rest
        # Collapsed during a job, the header repeats the panel's status line (a QLabel has no
        # change signal; twice a second is plenty for progress read at a glance).
        self._summary_timer = QTimer(self)
        self._summary_timer.setInterval(500)
        self._summary_timer.timeout.connect(self._refresh_summary)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.hide()

    def job_active(self, active: bool) -> None:
        """A job started (shown, open) or ended (left as its one-line result)."""
        self.close_button.setEnabled(not active)
        if active:
            self.show()
            self.toggle.setChecked(True)
        elif not self.panel.resume_paths:
            self.toggle.setChecked(False)  # else it stays open on its Resume button

    def resume_offered(self, offered: bool) -> None:
        """A stopped job can be resumed: the area opens on its Resume button (a collapsed or
        hidden area would keep the offer out of sight)."""
        if offered:
            self.show()
            self.toggle.setChecked(True)

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.panel.setVisible(expanded)
        self._refresh_summary()
        if expanded:
            self._summary_timer.stop()
        else:
            self._summary_timer.start()

    def _refresh_summary(self) -> None:
        text = "" if self.panel.isVisible() or self.toggle.isChecked() else self.panel.status.text()
        if self.summary.text() != text:
            self.summary.setText(text)
            self.summary.setToolTip(text)
