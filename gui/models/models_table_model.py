"""The Models table: one row per model (`model_rows.ModelRow`), its check coloured, long cells
(inputs, labels, the folder, a problem) whole in their tooltip."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from gui.models.model_rows import NONE, ModelRow
from gui.shared.table_model import Index, RowTableModel
from gui.targets.status_timeline import STATE_COLOURS

# What a model is and whether it can be used come first: they fit the table at 1024 px; the
# rest scrolls, the folder last.
COLUMNS = (
    "name",
    "task",
    "check",
    "source",
    "version",
    "inputs",
    "labels / outputs",
    "held-out",
    "folder",
)


class ModelsTableModel(RowTableModel[ModelRow]):
    """The rows `model_rows` makes of a registry; `ModelsView` shows and refills it."""

    columns = COLUMNS

    def set_rows(self, rows: list[ModelRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rows(self) -> list[ModelRow]:
        return list(self._rows)

    def row(self, index: int) -> ModelRow:
        return self._rows[index]

    def row_of(self, name: str) -> int:
        return next((i for i, r in enumerate(self._rows) if r.name == name), -1)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = COLUMNS[index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            text = _text(row, column)
            if role == Qt.ItemDataRole.ToolTipRole:
                if column == "check" and row.problems:
                    return "\n".join(row.problems)  # every problem, not only the first
                return text or None
            return text
        if column == "check" and role == Qt.ItemDataRole.ForegroundRole:
            state = "up" if row.ok and row.check == "ok" else "unknown" if row.ok else "down"
            return QColor(STATE_COLOURS[state])
        return None


def _text(row: ModelRow, column: str) -> str:
    if column == "name":
        return row.name
    if column == "task":
        return row.task
    if column == "version":
        return row.version
    if column == "inputs":
        return row.inputs
    if column == "labels / outputs":
        return row.outputs
    if column == "held-out":
        return row.score or NONE
    if column == "source":
        return row.source
    if column == "check":
        return row.check
    return str(row.folder)
