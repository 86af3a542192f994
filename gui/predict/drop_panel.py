"""A dropped-files job as the user sees it: progress, rate, ETA, cancel, and the bad rows."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.file_job import FileJob, RowProblem

MAX_LISTED = 1000  # every bad row is stored; the list shows the first ones


class DropPanel(QGroupBox):
    """A dropped-files job's progress, rate, ETA, cancel and bad rows; `MainWindow` shows it."""

    sigCancel = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Files", parent)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Drop JSON, JSONL, CSV or image files (or a folder) on the window.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the rows already read (Esc); it can resume")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.sigCancel)
        self.problems = QListWidget()
        self.problems.setToolTip("Rows that were rejected: line, field and reason")
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.problems)
        self._job: FileJob | None = None
        self._total = 1
        self._started = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._refresh)

    def start(self, job: FileJob, estimated_rows: int) -> None:
        self._job, self._total, self._started = job, estimated_rows, time.monotonic()
        self.cancel_button.setEnabled(True)
        self._timer.start()
        self._refresh()

    def add_problem(self, path: Path, problem: RowProblem) -> None:
        if self.problems.count() < MAX_LISTED:
            self.problems.addItem(problem.describe(Path(path.name)))

    def finish(self, message: str) -> None:
        self._refresh()
        self._timer.stop()
        self._job = None
        self.cancel_button.setEnabled(False)
        self.status.setText(message)

    def _refresh(self) -> None:
        job = self._job
        if job is None:
            return
        report = job.report
        done = report.done + report.skipped
        elapsed = max(time.monotonic() - self._started, 1e-3)
        rate = report.done / elapsed
        left = max(self._total - done, 0)
        eta = f"{left / rate:.0f} s left" if rate > 0 and left else ""
        self.progress.setValue(min(1000, round(1000 * done / self._total)))
        self.status.setText(
            f"{job.path.name}: {done:,} of ~{self._total:,} rows · {rate:,.0f} rows/s · "
            f"{report.rejected:,} rejected {eta}"
        )
