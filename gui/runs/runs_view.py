"""The Runs view: past runs (the table, `runs_table_model`) above the selected run's detail
(`run_report`), Compare for two of them (`runs_compare`), and export of a run's requests
(Chrome trace, CSV, JSONL).

Everything is read from SQLite on the reader connection, asynchronously on the qasync loop; the
export is the engine's `engine.export.export_file`, the same one `inferdeck export` uses.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QItemSelection,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from engine import export
from engine.ids import short_id
from engine.tasks import TaskOwner
from gui.runs.run_report import describe_run
from gui.runs.runs_table_model import COLUMNS, NUMERIC, RunsTableModel
from gui.shared.file_dialogs import file_dialog
from gui.shared.tables import row_table
from storage import queries
from storage.database import Database, LiveDatabaseError, is_live_database

SUFFIXES = {"chrome-trace": "json", "csv": "csv", "jsonl": "jsonl"}
NAME_FILTERS = {
    "chrome-trace": "Chrome trace (*.json)",
    "csv": "CSV (*.csv)",
    "jsonl": "JSON Lines (*.jsonl)",
}


# What a run is and how it went, left to right, before what tells runs apart in detail: these
# fit the table's width (at 1024 px the figures were scrolled out of sight, behind the
# settings); the others follow and scroll.
KEY_COLUMNS = ("name", "status", "ok", "rejected+failed", "throughput/s", "p50 ms", "p99 ms")
OTHER_WIDTHS = {"settings": 260, "kind": 55, "UI lag p99 ms": 0, "started": 140, "run": 160}
FIGURE_SAMPLE = "99,999.9"  # as wide as the widest figure the numeric columns usually hold
NAME_MIN_PX = 150  # a name elided in the middle still shows its kind and its time
NAME_MAX_PX = 340  # wider, the settings column after the figures moves out of sight


class _ElidesAtItsEnd(QStyledItemDelegate):
    """The settings column keeps its start (what tells runs apart comes first, see
    `runs_table_model.settings_text`); the table elides its other columns in the middle."""

    def initStyleOption(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        option.textElideMode = Qt.TextElideMode.ElideRight


def _one_line(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return " ".join(text.split()) or type(exc).__name__


class RunsView(QWidget):
    """The Runs tab (built by `gui.app`): runs above the selected one's detail, Compare, Export."""

    sigRunsLoaded = Signal(int)  # how many runs the table holds now
    sigDetailLoaded = Signal(str)  # the run ID the detail pane shows now

    def __init__(self, db: Database, tasks: TaskOwner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._db = db
        self._tasks = tasks
        self._selected: str | None = None
        self._detail_generation = 0
        self._last_dir = Path.home()
        self.table_model = RunsTableModel(db)

        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the runs again from the database (F5)")
        self.refresh_button.setShortcut("F5")
        self.refresh_button.clicked.connect(self.refresh)
        self.format_box = QComboBox()
        self.format_box.addItems(export.FORMATS)
        self.format_box.setToolTip("Format of the export")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the selected run's requests to a file (Ctrl+E)")
        self.export_button.setShortcut("Ctrl+E")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self.export_selected)
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip(
            "Select two runs (Ctrl+click) to compare their latency distributions and figures"
        )
        self.compare_button.setEnabled(False)
        self.compare_button.clicked.connect(self.compare_selected)
        self.compare_window: QWidget | None = None
        self.status = QLabel()
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # An unwrapped label asks for its text's full width: a long export path would widen
        # the whole window.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.table = row_table(self.table_model, ())
        self._arrange_columns()
        # Two runs may be selected at once, to compare them (`gui.runs.runs_compare`).
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)

        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a run to see its summary and file jobs")

        bar = QHBoxLayout()
        bar.addWidget(self.refresh_button)
        bar.addWidget(self.compare_button)
        bar.addStretch(1)
        bar.addWidget(QLabel("Format"))
        bar.addWidget(self.format_box)
        bar.addWidget(self.export_button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)

    # -- the list -----------------------------------------------------------------------------

    def _arrange_columns(self) -> None:
        """The key columns first and as wide as their text, the others after them; the name
        column takes the width they leave (`_fit_name`), long names elided in the middle (a
        run's name ends with its time)."""
        table, header = self.table, self.table.horizontalHeader()
        table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._settings_delegate = _ElidesAtItsEnd(table)
        table.setItemDelegateForColumn(COLUMNS.index("settings"), self._settings_delegate)
        metrics = header.fontMetrics()
        pad = 2 * header.style().pixelMetric(header.style().PixelMetric.PM_HeaderMargin) + 14
        for visual, name in enumerate((*KEY_COLUMNS, *OTHER_WIDTHS)):
            header.moveSection(header.visualIndex(COLUMNS.index(name)), visual)
        for column, name in enumerate(COLUMNS):
            width = OTHER_WIDTHS.get(name) or metrics.horizontalAdvance(name) + pad
            if name in NUMERIC:
                width = max(width, metrics.horizontalAdvance(FIGURE_SAMPLE) + pad)
            table.setColumnWidth(column, width)
        table.viewport().installEventFilter(self)
        self._fit_name()

    def _fit_name(self) -> None:
        header = self.table.horizontalHeader()
        others = sum(header.sectionSize(COLUMNS.index(n)) for n in KEY_COLUMNS[1:])
        room = self.table.viewport().width() - others
        self.table.setColumnWidth(COLUMNS.index("name"), max(NAME_MIN_PX, min(NAME_MAX_PX, room)))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.table.viewport() and event.type() == QEvent.Type.Resize:
            self._fit_name()  # the name column stretches with the table
        return super().eventFilter(watched, event)

    def refresh(self) -> None:
        self._tasks.spawn(self.load(), "runs-load")

    async def load(self) -> None:
        """Re-read the runs, keeping the selected run selected (its detail is re-read too)."""
        keep = self._selected
        try:
            await self.table_model.load()
        except sqlite3.Error as exc:
            self.status.setText(f"cannot read runs: {_one_line(exc)}")
            return
        row = None if keep is None else self.table_model.row_of(keep)
        if keep is not None and row is not None:
            self.table.selectRow(row)
            # Selecting the same run again does not re-read its detail (see `_on_selection`),
            # but a run that was running may have ended since: re-read it here.
            self._tasks.spawn(self.show_run(keep), "runs-detail")
        else:
            self._selected = None
            self.export_button.setEnabled(False)
            self.detail.clear()
        self.sigRunsLoaded.emit(self.table_model.rowCount())

    def selected_run(self) -> queries.RunRow | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.run(rows[0].row()) if rows else None

    def _on_selection(self, selected: QItemSelection, deselected: QItemSelection) -> None:
        run = self.selected_run()
        count = len(self.table.selectionModel().selectedRows())
        self.export_button.setEnabled(run is not None)
        self.compare_button.setEnabled(count == 2)
        if count < 2:
            self._close_compare()  # it compared runs that are no longer both selected
        if run is None:
            # Nothing selected: no summary of a run the person let go of (and a read still
            # under way for it is dropped, see `show_run`).
            self._selected = None
            self._detail_generation += 1
            self.detail.clear()
            return
        if run.run_id == self._selected:
            return
        self._selected = run.run_id
        self._tasks.spawn(self.show_run(run.run_id), "runs-detail")

    # -- the detail ---------------------------------------------------------------------------

    async def show_run(self, run_id: str) -> None:
        self._detail_generation += 1
        generation = self._detail_generation
        reader = self._db.reader
        run: queries.RunRow | None = None
        try:
            run = await queries.get_run(reader, run_id)
            detail = await queries.run_detail(reader, run) if run else None
        except sqlite3.Error as exc:
            text = f"cannot read run {run_id}: {_one_line(exc)}"
        else:
            text = describe_run(detail) if detail else f"no run matches {run_id!r}"
        if generation != self._detail_generation or self._selected != run_id:
            return  # another run (or none) was selected while this one was read
        self.detail.setPlainText(text)
        self.sigDetailLoaded.emit(run.run_id if run else run_id)

    # -- compare ------------------------------------------------------------------------------

    def compare_selected(self) -> None:
        """Open the two selected runs side by side, the older one as the base (A)."""
        from gui.runs.runs_compare import RunsCompareView

        rows = self.table.selectionModel().selectedRows()
        if len(rows) != 2:
            self.status.setText("Select two runs to compare")
            return
        a, b = sorted((self.table_model.run(r.row()) for r in rows), key=lambda r: r.started_us)
        self._close_compare()  # one comparison open at a time
        self.compare_window = window = RunsCompareView(a, b, self)
        # Its plot follows the app's theme as the Monitor's do (the main window holds it).
        theme = getattr(self.window(), "theme", None)
        if theme is not None:
            window.follow_theme(theme)
        window.show()

    def _close_compare(self) -> None:
        if self.compare_window is not None:
            self.compare_window.close()
            self.compare_window.deleteLater()
            self.compare_window = None

    # -- export -------------------------------------------------------------------------------

    def export_selected(self) -> None:
        """Ask where to save the selected run in the chosen format, then export it."""
        run = self.selected_run()
        if run is None:
            self.status.setText("Select a run to export")
            return
        fmt = self.format_box.currentText()
        suffix = SUFFIXES[fmt]
        dialog = file_dialog(self, f"Export run {short_id(run.run_id)} as {fmt}")
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile)
        dialog.setNameFilter(NAME_FILTERS[fmt])
        dialog.setDefaultSuffix(suffix)
        dialog.setDirectory(str(self._last_dir))
        dialog.selectFile(f"run-{short_id(run.run_id)}.{suffix}")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        run_id = run.run_id
        dialog.fileSelected.connect(
            lambda path: self._tasks.spawn(self.export_run(run_id, fmt, Path(path)), "run-export")
        )
        # open(), not exec(): exec() spins a nested event loop inside the qasync loop's callback.
        dialog.open()

    async def export_run(self, run_id: str, fmt: str, path: Path) -> int:
        """Write a run's requests to `path`; return how many, or -1 if it failed (the status
        label then says why in one line). The file appears whole or not at all."""
        self._last_dir = path.parent
        if is_live_database(path):
            # Refused before the run is read, in the view's words (`export_file` refuses too).
            self.status.setText(
                f"Export refused: {path.name} is the database InferDeck has open; "
                "choose another file"
            )
            return -1
        self.status.setText(f"Exporting run {short_id(run_id)} to {path}…")
        try:
            run = await queries.get_run(self._db.reader, run_id)
            if run is None:
                self.status.setText(f"Export failed: no run matches {run_id!r}")
                return -1
            rows = queries.iter_run_requests(self._db.reader, run.run_id)
            count = await export.export_file(path, fmt, rows, run.started_us)
        except (OSError, sqlite3.Error, LiveDatabaseError) as exc:
            self.status.setText(f"Export to {path} failed: {_one_line(exc)}")
            return -1
        self.status.setText(f"Exported {count:,} requests of run {short_id(run.run_id)} to {path}")
        return count
