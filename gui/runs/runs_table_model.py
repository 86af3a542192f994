"""The Runs table's model: recent runs (GUI sessions, dropped files, CLI predicts, load runs),
newest first, one row each: what it was (its name, status and settings, `engine.runs`) and its
summary's figures, as display text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal

from engine.runs import run_name, run_settings
from gui.runs.run_report import ms_text
from gui.shared.table_model import RIGHT, Index, RowTableModel
from gui.shared.when import MISSING, when_text
from storage import queries
from storage.database import Database

COLUMNS = (
    "name",
    "status",
    "settings",
    "kind",
    "ok",
    "rejected+failed",
    "throughput/s",
    "p50 ms",
    "p99 ms",
    "UI lag p99 ms",
    "started",
    "run",
)
NUMERIC = frozenset({"ok", "rejected+failed", "throughput/s", "p50 ms", "p99 ms", "UI lag p99 ms"})
LIMIT = 500


# Left out of the table's one line (the name already says the target or file; the tooltip,
# the detail and Compare have them all): what tells runs apart comes first in a narrow column.
_NOT_IN_LINE = frozenset({"target", "URL", "protocol", "client"})


def settings_text(run: queries.RunRow) -> str:
    """A run's settings on one line, file paths by their names (the tooltip has them whole)."""
    parts = []
    for key, value in run_settings(run.kind, run.config).items():
        if key in _NOT_IN_LINE:
            continue
        if key in ("file", "files"):
            names = [Path(f).name for f in value.split(", ")]
            value = ", ".join(names[:3]) + (f" +{len(names) - 3} more" if len(names) > 3 else "")
        parts.append(f"{key} {value}")
    return " · ".join(parts)


def _cell(run: queries.RunRow, column: str) -> str:
    summary = run.summary or {}
    latency = summary.get("latency_ms") or {}
    if column == "name":
        return run_name(run.kind, run.config, run.started_us)
    if column == "settings":
        return settings_text(run)
    if column == "started":
        return when_text(run.started_us)
    if column in ("kind", "status"):
        return str(getattr(run, column))
    if column == "ok":
        ok = summary.get("ok")
        return MISSING if ok is None else f"{ok:,}"
    if column == "rejected+failed":
        if "rejected" not in summary and "failed" not in summary:
            return MISSING
        return f"{summary.get('rejected', 0) + summary.get('failed', 0):,}"
    if column == "throughput/s":
        rate = summary.get("throughput_per_s")
        return MISSING if rate is None else f"{rate:,.1f}"
    if column == "p50 ms":
        return ms_text(latency.get("p50"))
    if column == "p99 ms":
        return ms_text(latency.get("p99"))
    if column == "UI lag p99 ms":
        return ms_text((summary.get("ui_loop_lag_ms") or {}).get("p99"))
    return run.run_id


class RunsTableModel(RowTableModel[queries.RunRow]):
    """Recent runs, newest first, as display text; `RunsView` shows it and calls `load()`."""

    columns = COLUMNS
    right_aligned = NUMERIC
    sigLoaded = Signal()

    def __init__(self, db: Database) -> None:
        super().__init__()
        self._db = db
        self._generation = 0  # bumps on each load, so an older load that ends later is dropped

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        run = self._rows[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(run, column)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMERIC:
            return RIGHT
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == "settings":
                settings = run_settings(run.kind, run.config)
                return "\n".join(f"{k}: {v}" for k, v in settings.items()) or None
            if column == "name":
                return f"{run.kind} run, started {when_text(run.started_us)}"
            if column == "run":
                return run.run_id
        return None

    # -- rows ---------------------------------------------------------------------------------

    def run(self, row: int) -> queries.RunRow:
        return self._rows[row]

    def row_of(self, run_id: str) -> int | None:
        for i, run in enumerate(self._rows):
            if run.run_id == run_id:
                return i
        return None

    async def load(self) -> None:
        self._generation += 1
        generation = self._generation
        rows = await queries.list_runs(self._db.reader, limit=LIMIT)
        if generation != self._generation:
            return
        self.beginResetModel()
        self._rows = rows
        self.endResetModel()
        self.sigLoaded.emit()
