"""The Requests table: a Qt item model paging history from SQLite, plus a live tail.

Pages come by keyset (`storage.queries.page_requests`), asynchronously on the qasync loop, as
the view scrolls (`canFetchMore`/`fetchMore`); requests finishing now arrive through the bridge
and go on top when they match the filter and the table is sorted by time.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from engine.tasks import TaskOwner
from engine.work import Work
from storage import queries
from storage.database import Database

COLUMNS = ("time", "status", "model", "client", "source", "latency ms", "result", "request")
PAGE = 200
Index = QModelIndex | QPersistentModelIndex


def _summary(row: dict[str, Any]) -> str:
    for key in ("output", "error"):
        text = row.get(key)
        if text:
            try:
                value = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                return str(text)
            return str(value.get("label") or value.get("message") or "")
    return ""


def _row_from_work(work: Work) -> dict[str, Any]:
    return {
        "request_id": work.request_id,
        "status": work.status,
        "model": work.model_name,
        "client_id": work.client_id,
        "source": work.source,
        "created_us": work.created_us,
        "latency_us": work.latency_us,
        "output": work.output,
        "error": work.error.model_dump() if work.error else None,
        "input": work.input_json,
        "spans": [list(s) for s in work.spans],
        "id": None,
    }


class RequestsTableModel(QAbstractTableModel):
    sigLoaded = Signal()

    def __init__(self, db: Database, tasks: TaskOwner) -> None:
        super().__init__()
        self._db = db
        self._tasks = tasks
        self._rows: list[dict[str, Any]] = []
        self.filter = queries.RequestFilter()
        self.sort_by = "time"
        self._exhausted = False
        self._loading = False
        self._generation = 0  # bumps on reload, so a stale page is dropped

    # -- Qt model API -------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        row = self._rows[index.row()]
        column = COLUMNS[index.column()]
        if column == "time":
            return dt.datetime.fromtimestamp(row["created_us"] / 1e6).strftime("%H:%M:%S.%f")[:-3]
        if column == "latency ms":
            latency = row.get("latency_us")
            return "" if latency is None else f"{latency / 1000:.2f}"
        if column == "result":
            return _summary(row)
        if column == "request":
            return row["request_id"]
        if column == "source":
            return Path(row["source"]).name if "/" in row["source"] else row["source"]
        key = {"client": "client_id"}.get(column, column)
        return row.get(key)

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and not self._exhausted and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if self.canFetchMore(parent):
            self._loading = True
            self._tasks.spawn(self.load_page(), "requests-page")

    # -- loading ------------------------------------------------------------------------------

    def row(self, index: int) -> dict[str, Any]:
        return self._rows[index]

    def set_filter(self, where: queries.RequestFilter, sort: str = "time") -> None:
        self.filter, self.sort_by = where, sort
        self.beginResetModel()
        self._rows = []
        self._exhausted = False
        self._generation += 1
        self.endResetModel()
        self._loading = True
        self._tasks.spawn(self.load_page(), "requests-page")

    async def load_page(self) -> None:
        generation = self._generation
        after = None
        stored = [r for r in self._rows if r.get("id") is not None]
        if stored:
            last = stored[-1]
            key = last["created_us"] if self.sort_by == "time" else last["latency_us"]
            after = (key, last["id"])
        try:
            page = await queries.page_requests(
                self._db.reader, self.filter, sort=self.sort_by, after=after, limit=PAGE
            )
        finally:
            self._loading = False
        if generation != self._generation:
            return
        if len(page) < PAGE:
            self._exhausted = True
        if page:
            start = len(self._rows)
            self.beginInsertRows(QModelIndex(), start, start + len(page) - 1)
            self._rows.extend(page)
            self.endInsertRows()
        self.sigLoaded.emit()

    def add_live(self, done: list[Work]) -> None:
        """Requests that just finished, newest first on top (time order only)."""
        if self.sort_by != "time":
            return
        f = self.filter
        rows = [
            _row_from_work(w)
            for w in reversed(done)
            if (f.status is None or w.status == f.status)
            and (f.model is None or w.model_name == f.model)
            and (f.client_id is None or w.client_id == f.client_id)
            and (f.source is None or w.source == f.source)
            and (f.run_id is None or w.run.run_id == f.run_id)
            and (not f.text or f.text in w.request_id)
        ]
        if not rows:
            return
        self.beginInsertRows(QModelIndex(), 0, len(rows) - 1)
        self._rows[:0] = rows
        self.endInsertRows()
