"""The base of the app's flat, read-only table models: rows in a list under named columns.

A view's model subclasses `RowTableModel`, names its `columns` (and the numeric ones whose
header is aligned right like their cells, `right_aligned`), keeps its rows in `self._rows`
and writes `data()` and whatever loads the rows. Qt asks `rowCount`, `columnCount` and
`headerData` on every paint, so they stay one-liners over plain attributes.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

Index = QModelIndex | QPersistentModelIndex
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter

Row = TypeVar("Row")


class RowTableModel(QAbstractTableModel, Generic[Row]):
    """Counts and headers for a list of rows; the Requests and Targets table models subclass it."""

    columns: ClassVar[tuple[str, ...]] = ()
    right_aligned: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[Row] = []

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.columns)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return RIGHT if self.columns[section] in self.right_aligned else None
        return None
