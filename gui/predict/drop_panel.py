"""A dropped-files job as the user sees it: progress, rate, ETA, cancel, Resume, and the bad rows
(each opens: its stored request's trace, and its file, row, field and message in full).

The panel only shows and asks; `DropRunner` runs the jobs. It says when a job starts and ends
(`sigActive`, `job_running`) so the window can show the Files area and ask before quitting.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from engine.file_job import FileJob, RowProblem

MAX_LISTED = 1000  # every bad row is stored; the list shows the first ones
REQUEST_ROLE = Qt.ItemDataRole.UserRole  # a bad row's stored request ID
DETAIL_ROLE = Qt.ItemDataRole.UserRole + 1  # its file, row, field and message in full


def problem_detail(path: Path, problem: RowProblem) -> str:
    """A bad row in full (the list shows it on one line, elided): where, what, and which
    stored request holds it; three short lines, so the Files area stays small."""
    where = f"row {problem.row}" + (f" (line {problem.line})" if problem.line is not None else "")
    field = f"field {problem.field}" if problem.field else "the whole row"
    lines = [f"{path} · {where} · {field}", problem.message]
    if problem.more:
        lines[1] += f" (and {problem.more} more problem(s) in this row)"
    if problem.request_id:
        lines.append(f"request {problem.request_id}: double-click the row to open its trace")
    return "\n".join(lines)


class DropPanel(QGroupBox):
    """A dropped-files job's progress, rate, ETA, cancel, Resume and bad rows; `MainWindow`
    shows it, `DropRunner` drives it."""

    sigCancel = Signal()
    sigResume = Signal()  # Resume was pressed: run `resume_paths` again (they resume)
    sigActive = Signal(bool)  # True when a job starts, False when it has ended
    sigOpenRequest = Signal(str)  # a bad row's stored request, to open in the trace view
    sigResumeOffered = Signal(bool)  # Resume shown (a stopped job can go on) or hidden

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Files", parent)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("Drop JSON, JSONL, CSV or image files (or a folder) on the window.")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the rows already read (Esc); it can resume")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.sigCancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Go on with the stopped file from the row it reached")
        self.resume_button.setVisible(False)
        self.resume_button.clicked.connect(self.sigResume)
        self.problems = QListWidget()
        self.problems.setToolTip(
            "Rows that were rejected: line, field and reason. Double-click one to open it."
        )
        # Double-click only: `itemActivated` fires on the same double-click too (and on a
        # single click under some styles), which would open the trace twice.
        self.problems.itemDoubleClicked.connect(self._open_problem)
        self.problems.currentItemChanged.connect(self._show_problem)
        self.problem_detail = QLabel()
        self.problem_detail.setWordWrap(True)
        self.problem_detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A long message wraps rather than widening the window.
        self.problem_detail.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.problem_detail.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        row.addWidget(self.resume_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.problems)
        layout.addWidget(self.problem_detail)
        self.resume_paths: list[Path] = []
        self._active = False
        self._job: FileJob | None = None
        self._total = 1
        self._started = 0.0
        self._question: QMessageBox | None = None
        self._answer: asyncio.Future[bool] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._refresh)

    # -- a job's life -------------------------------------------------------------------------

    @property
    def job_running(self) -> bool:
        """Whether a file job is under way (from the drop until its run is stored)."""
        return self._active

    def set_active(self, active: bool) -> None:
        if active != self._active:
            self._active = active
            if active:
                self.offer_resume([], "")
            self.sigActive.emit(active)

    def clear_problems(self) -> None:
        self.problems.clear()
        self.problem_detail.clear()
        self.problem_detail.setVisible(False)

    def start(self, job: FileJob, estimated_rows: int) -> None:
        self._job, self._total, self._started = job, estimated_rows, time.monotonic()
        self.cancel_button.setEnabled(True)
        self._timer.start()
        self._refresh()

    def finish(self, message: str) -> None:
        self._refresh()
        self._timer.stop()
        self._job = None
        self.cancel_button.setEnabled(False)
        self.status.setText(message)

    def offer_resume(self, paths: list[Path], why: str) -> None:
        """Show Resume for `paths` (the stopped file first), or hide it when there are none."""
        offered = bool(paths)
        changed = offered != bool(self.resume_paths)
        self.resume_paths = list(paths)
        self.resume_button.setVisible(offered)
        if offered:
            self.resume_button.setToolTip(f"{why}: go on from the row it reached")
        if changed:
            self.sigResumeOffered.emit(offered)

    def add_problem(self, path: Path, problem: RowProblem) -> None:
        if self.problems.count() >= MAX_LISTED:
            return
        item = QListWidgetItem(problem.describe(Path(path.name)))
        detail = problem_detail(path, problem)
        item.setToolTip(detail)
        item.setData(REQUEST_ROLE, problem.request_id)
        item.setData(DETAIL_ROLE, detail)
        self.problems.addItem(item)

    # -- questions ----------------------------------------------------------------------------

    def ask_rerun(self, names: list[str]) -> asyncio.Future[bool]:
        """Ask whether files that already ran to their end should run again; the future holds
        the answer (False if the question is dismissed). open(), never exec(): exec() would
        spin a nested event loop inside the qasync loop."""
        self.dismiss_question()
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        which = names[0] if len(names) == 1 else f"{len(names)} of these files"
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Run it again?",
            f"{which} already ran to the end. Run it again?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self,
        )
        box.setInformativeText(
            "Every row runs again and is stored again; the earlier results stay in History."
            + ("" if len(names) == 1 else "\n" + "\n".join(names))
        )
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(button: int) -> None:
            if not answer.done():
                answer.set_result(button == QMessageBox.StandardButton.Yes)
            self._question = None

        box.finished.connect(answered)
        self._question, self._answer = box, answer
        box.open()
        return answer

    def dismiss_question(self) -> None:
        """Close an open question (the window is closing): its answer is No."""
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(False)
        if self._question is not None:
            self._question.close()
            self._question = None

    # -- bad rows -----------------------------------------------------------------------------

    def _show_problem(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        text = None if item is None else item.data(DETAIL_ROLE)
        self.problem_detail.setText(text or "")
        self.problem_detail.setVisible(bool(text))

    def _open_problem(self, item: QListWidgetItem) -> None:
        """Show the row in full, and open its stored request when there is one."""
        self._show_problem(item)
        request_id = item.data(REQUEST_ROLE)
        if request_id:
            self.sigOpenRequest.emit(str(request_id))

    # -- progress -----------------------------------------------------------------------------

    def _refresh(self) -> None:
        job = self._job
        if job is None:
            return
        report = job.report
        done = report.done + report.skipped
        elapsed = max(time.monotonic() - self._started, 1e-3)
        rate = report.done / elapsed
        total = report.rows_total
        if total is None:
            # The estimate counts lines: a file can hold more rows than that.
            total = max(self._total, done)
            of = f" of about {total:,}" if self._total >= done else ""
        else:
            of = f" of {total:,}"
        left = max(total - done, 0)
        eta = f" · {left / rate:,.0f} s left" if rate > 0 and left else ""
        before = f" ({report.skipped:,} done before)" if report.skipped else ""
        self.progress.setValue(min(1000, round(1000 * done / max(total, 1))))
        self.status.setText(
            f"{job.path.name}: {done:,}{of} rows{before} · {rate:,.0f} rows/s · "
            f"{report.rejected + report.failed:,} bad{eta}"
        )
