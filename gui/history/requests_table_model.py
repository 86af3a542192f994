"""The Requests table: a Qt item model paging history from SQLite, plus a live tail.

Pages come by keyset, asynchronously on the qasync loop, as the view scrolls
(`canFetchMore`/`fetchMore`). Each page is stepped through a `storage.queries.RequestScan`: every
query is bounded, so a rare match (text in inputs) fills the table over several short queries,
reported by `sigSearching`, and a new filter never waits behind a long one. Requests finishing
now arrive through the bridge and go on top when they match the filter and the table is sorted
by time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, Signal

from engine.tasks import TaskOwner
from engine.work import Work, compact_json
from gui.shared.table_model import Index, RowTableModel
from gui.shared.when import when_text
from storage import queries
from storage.database import Database

COLUMNS = ("time", "status", "model", "client", "source", "latency ms", "result", "request")
PAGE = 200
MAX_LIVE = 10_000  # live rows kept on top before the table reloads from the database


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
    """A finished request in the stored row's shape: JSON columns as text. A dict holding only
    strings and numbers is not tracked by the garbage collector, so a long live tail adds
    nothing to the full collections that would otherwise stall the loop for 100+ ms."""
    return {
        "request_id": work.request_id,
        "status": work.status,
        "model": work.model_name,
        "client_id": work.client_id,
        "source": work.source,
        "created_us": work.created_us,
        "latency_us": work.latency_us,
        "output": compact_json(work.output) if work.output is not None else None,
        "error": work.error.model_dump_json(exclude_none=True) if work.error else None,
        "input": work.input_json,
        "spans": compact_json([list(s) for s in work.spans]),
        "id": None,
    }


def _text_matches(text: str, work: Work) -> bool:
    """The live tail's reading of a text filter, as `storage.queries` reads it: the start of a
    request ID, or text in the ID, input or error (case-insensitive)."""
    needle = text.lower()
    error = work.error.model_dump_json() if work.error is not None else ""
    return any(needle in part.lower() for part in (work.request_id, work.input_json or "", error))


class RequestsTableModel(RowTableModel[dict[str, Any]]):
    """Stored requests a page at a time, the live tail on top; `RequestsView` shows it."""

    columns = COLUMNS
    sigLoaded = Signal()  # a page is in, or the history has no more matches
    sigSearching = Signal(int)  # requests examined so far while a page is still being found
    sigChoices = Signal(list, list)  # client IDs, recent sources: for the view's filters

    def __init__(self, db: Database, tasks: TaskOwner) -> None:
        super().__init__()
        self._db = db
        self._tasks = tasks
        self._live = 0  # rows added by the live tail since the last reload
        self.filter = queries.RequestFilter()
        self.sort_by = "time"
        self._scan: queries.RequestScan | None = None
        self._exhausted = False
        self._loading = False
        self._generation = 0  # bumps on reload, so a stale page or step is dropped

    # -- Qt model API -------------------------------------------------------------------------

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole and column == "source":
            return row["source"]  # the table shows a file's name; the full path on hover
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if column == "time":
            return when_text(row["created_us"], "milliseconds")
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
        self._live = 0
        self._scan = None
        self._exhausted = False
        self._generation += 1
        self.endResetModel()
        self._loading = True
        self._tasks.spawn(self.load_page(), "requests-page")

    async def load_page(self) -> None:
        """Steps the scan until a page is in or nothing more matches; rows show as they come."""
        generation = self._generation
        try:
            if self._scan is None:
                plan = await queries.plan_requests(self._db.reader, self.filter, sort=self.sort_by)
                if generation != self._generation:
                    return
                self._scan = queries.RequestScan(self._db.reader, plan)
            scan = self._scan
            found = 0
            while found < PAGE and not scan.done:
                page = await scan.step(PAGE - found)
                if generation != self._generation:
                    return  # a newer filter owns the table now
                found += len(page)
                if page:
                    start = len(self._rows)
                    self.beginInsertRows(QModelIndex(), start, start + len(page) - 1)
                    self._rows.extend(page)
                    self.endInsertRows()
                if found < PAGE and not scan.done:
                    self.sigSearching.emit(scan.examined)
            self._exhausted = scan.done
        finally:
            if generation == self._generation:
                self._loading = False
        self.sigLoaded.emit()

    def load_choices(self) -> None:
        """Client IDs and recent sources for the view's filters (`sigChoices`), off the loop."""
        self._tasks.spawn(self._load_choices(), "requests-choices")

    async def _load_choices(self) -> None:
        clients = await queries.client_ids(self._db.reader)
        sources = await queries.recent_sources(self._db.reader)
        self.sigChoices.emit(clients, sources)

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
            and (not f.text or _text_matches(f.text, w))
        ]
        if not rows:
            return
        self._live += len(rows)
        if self._live > MAX_LIVE:
            # Older live rows are in the database by now: start again from its newest page
            # rather than let the table (and memory) grow with every request of a long run.
            self.set_filter(self.filter, self.sort_by)
            return
        self.beginInsertRows(QModelIndex(), 0, len(rows) - 1)
        self._rows[:0] = rows
        self.endInsertRows()
