"""The main window: targets on the left, views in tabs, live figures in the status bar."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QLabel,
    QListWidget,
    QMainWindow,
    QSplitter,
    QTabWidget,
    QWidget,
)

from engine.models.runtime import LoadedModel
from engine.stats import StatsSnapshot
from gui.drop_panel import DropPanel
from gui.monitor_view import MonitorView
from gui.predict_view import PredictView
from gui.requests_view import RequestsView
from gui.trace_view import TraceView


class MainWindow(QMainWindow):
    sigCloseRequested = Signal()
    sigFilesDropped = Signal(list)  # list[Path], dropped anywhere on the window

    def __init__(self, models: list[LoadedModel], db_path: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("InferDeck")
        self._closing_done = False
        self.targets = QListWidget()
        self.targets.addItem("Local engine")
        self.targets.setCurrentRow(0)
        self.targets.setToolTip("Where requests go")
        self.predict_view = PredictView(models)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.predict_view, "Predict")
        self.drop_panel = DropPanel()
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.tabs)
        right.addWidget(self.drop_panel)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 1)
        splitter = QSplitter()
        splitter.addWidget(self.targets)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([180, 900])
        self.setCentralWidget(splitter)

        self.model_state = QLabel("models: loading…")
        self.queue_state = QLabel("queue 0 · in flight 0")
        self.rate_state = QLabel("0 req/s")
        self.lag_state = QLabel("UI lag —")
        self.db_state = QLabel(f"db {db_path}")
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
        self._settings = QSettings("InferDeck", "InferDeck")
        geometry = self._settings.value("main/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 760)
        last_model = self._settings.value("predict/model")
        if isinstance(last_model, str) and last_model in {m.name for m in models}:
            self.predict_view.model_box.setCurrentText(last_model)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.drop_files(paths)

    def drop_files(self, paths: list[Path]) -> None:
        self.sigFilesDropped.emit(paths)

    def add_requests_view(self, view: RequestsView) -> None:
        """Added once the database is open (the table pages from it)."""
        self.requests_view = view
        self.tabs.addTab(view, "Requests")
        self.trace_view = TraceView()
        self.tabs.addTab(self.trace_view, "Trace")
        self.monitor_view = MonitorView()
        self.tabs.addTab(self.monitor_view, "Monitor")
        view.sigOpen.connect(self.open_trace)

    def open_trace(self, row: dict[str, object]) -> None:
        self.trace_view.show_request(row)
        self.tabs.setCurrentWidget(self.trace_view)

    def set_models_ready(self, names: list[str]) -> None:
        self.model_state.setText(f"models ready: {', '.join(names)}")

    def on_stats(self, snap: StatsSnapshot) -> None:
        self.queue_state.setText(f"queue {snap.queue_depth} · in flight {snap.in_flight}")
        self.rate_state.setText(f"{snap.throughput_per_s:,.0f} req/s · p99 {snap.p99_ms:.1f} ms")

    def show_lag(self, lag_ms: dict[str, float]) -> None:
        self.lag_state.setText(f"UI lag p99 {lag_ms['p99']:.1f} ms")

    def closeEvent(self, event: QCloseEvent) -> None:
        """The first close asks the app to drain and flush; the window closes once it has."""
        if self._closing_done:
            event.accept()
            return
        self._settings.setValue("main/geometry", self.saveGeometry())
        self._settings.setValue("predict/model", self.predict_view.model_box.currentText())
        event.ignore()
        self.sigCloseRequested.emit()

    def finish_close(self) -> None:
        self._closing_done = True
        self.close()
