"""The Requests table: a Qt item model paging history from SQLite, plus a live tail.

Pages come by keyset, asynchronously on the qasync loop, as the view scrolls
(`canFetchMore`/`fetchMore`), in the order of any sortable column (`SORTABLE`, the server's
ORDER BY). Each page is stepped through a `storage.queries.RequestScan`: every query is bounded,
so a rare match (text in inputs) fills the table over several short queries, reported by
`sigSearching`, and a new filter never waits behind a long one. Once a filter's first page is
in, its matches are counted (bounded, `sigCount`).

Live, sorted newest first: requests this app's engine finishes arrive through the bridge
(`add_live`); every other writer of the file (a file job, a load run, a remote prediction,
`inferdeck serve` or `inferdeck predict` in another process) is found by `poll_tail`, which the
view calls twice a second: `PRAGMA data_version` says whether anything was committed since,
and only then are the rows past the newest `id` seen read (a range of the table's key), and
the table's pending rows (`queued`) re-read. A request is shown once, however it came.
"""

from __future__ import annotations

import asyncio
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
from storage.queries import request_search

COLUMNS = ("time", "status", "model", "client", "source", "latency ms", "result", "request")
# Column -> the query layer's sort, and whether a first click sorts it descending.
SORTABLE = {
    "time": ("time", True),
    "status": ("status", False),
    "model": ("model", False),
    "source": ("source", False),
    "latency ms": ("latency", True),
    "result": ("label", False),
}
PAGE = 200
SCREEN = 50  # rows a new filter shows first (more than a table's height), then the page
MAX_LIVE = 10_000  # live rows kept on top before the table reloads from the database
PENDING = ("queued", "running")  # rows the tail re-reads until they have a result
PENDING_SCAN = 500  # how far down the table the tail looks for pending rows
# New matches one look of the tail puts on top (a 1,000 req/s load stores ~500 between two
# looks); more than this and the table reloads its first page instead.
TAIL_LIMIT = 1_000


def source_text(row: dict[str, Any]) -> str:
    """Where a request came from, as the table shows it: a file's name and row
    ("iris.csv:42"), a remote target ("load → web", "remote → web"), `serve` for HTTP
    callers of `inferdeck serve`, else the stored source (form, rerun, ...)."""
    source = str(row.get("source") or "")
    target = row.get("target") or "local"
    if source in ("load", "remote") or (target != "local" and source not in ("http", "")):
        return f"{source} → {target}"
    if source == "http":
        return "serve"
    if "/" in source or "\\" in source:
        name = Path(source).name if "/" in source else source.rsplit("\\", 1)[-1]
        line = row.get("source_row")
        return f"{name}:{line}" if line is not None else name
    return source


# Significant digits of a regression value in the result column and the trace's verdicts:
# enough for 373.15 (K) to read as itself, few enough for a table cell.
VALUE_DIGITS = 5


def number_text(value: float) -> str:
    """A number in a few characters: `212`, `373.15`, `1.2346e+05`."""
    return f"{value:.{VALUE_DIGITS}g}"


def values_text(values: dict[str, float]) -> str:
    """A regressor's answer on one line: `fahrenheit=212, kelvin=373.15`."""
    return ", ".join(f"{name}={number_text(value)}" for name, value in values.items())


def _oip_tensors(output: dict[str, Any]) -> list[dict[str, Any]]:
    outputs = output.get("outputs")
    if not isinstance(outputs, list):
        return []
    return [t for t in outputs if isinstance(t, dict) and isinstance(t.get("name"), str)]


def answer_label(output: Any) -> str | None:
    """The class an answer names: the engine's `{"label": ...}`, an `inferdeck` service's
    `{"outputs": {"label": ...}}` or an OIP answer's `label` output."""
    if not isinstance(output, dict):
        return None
    if isinstance(output.get("label"), str):
        return str(output["label"])
    outputs = output.get("outputs")
    if isinstance(outputs, dict):
        return answer_label(outputs)
    for tensor in _oip_tensors(output):
        if tensor["name"] == "label":
            data = tensor.get("data")
            if isinstance(data, list) and data and isinstance(data[0], str):
                return data[0]
    return None


def answer_values(output: Any) -> dict[str, float] | None:
    """The numbers a regressor's answer names: the engine's `{"values": {...}}`, an
    `inferdeck` service's `{"outputs": {"values": {...}}}`, or an OIP answer's one-number
    tensors (one per output, for one row); None for a classifier's answer or another shape."""
    if not isinstance(output, dict):
        return None
    values = output.get("values")
    if isinstance(values, dict) and values:
        named = {str(k): v for k, v in values.items() if _is_number(v)}
        return named if len(named) == len(values) else None
    outputs = output.get("outputs")
    if isinstance(outputs, dict):
        return answer_values(outputs)
    tensors = _oip_tensors(output)
    if not tensors or any(t["name"] in ("label", "scores") for t in tensors):
        return None  # (an OIP classifier's answer, or none)
    found: dict[str, float] = {}
    for tensor in tensors:
        data = tensor.get("data")
        if not (isinstance(data, list) and len(data) == 1 and _is_number(data[0])):
            return None  # a batch, a wide tensor or binary data: not one row's numbers
        found[tensor["name"]] = data[0]
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def result_text(output: Any) -> str:
    """What the Requests table's result column says of an answer: a classifier's label, or a
    regressor's values (`fahrenheit=212, kelvin=373.15`)."""
    label = answer_label(output)
    if label is not None:
        return label
    values = answer_values(output)
    return values_text(values) if values else ""


def _summary(row: dict[str, Any]) -> str:
    for key in ("output", "error"):
        text = row.get(key)
        if text:
            try:
                value = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                return str(text)
            if not isinstance(value, dict):
                return ""
            if key == "output":
                return result_text(value)
            return str(value.get("message") or "")
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
        "target": work.target,
        "source_row": work.source_row,
        "created_us": work.created_us,
        "latency_us": work.latency_us,
        "output": compact_json(work.output) if work.output is not None else None,
        "error": work.error.model_dump_json(exclude_none=True) if work.error else None,
        "input": work.input_json,
        "spans": compact_json([list(s) for s in work.spans]),
        "id": None,
    }


def _text_matches(text: str, work: Work) -> bool:
    """The live rows' reading of a text filter, as `storage.queries` reads it: text in the ID,
    input, output or error (case-insensitive), JSON found however it is spaced."""
    error = work.error.model_dump_json() if work.error is not None else ""
    output = compact_json(work.output) if work.output is not None else ""
    if text.lower() in work.request_id.lower():
        return True
    parts = [part.lower() for part in (work.input_json or "", output, error)]
    spellings = request_search.json_spellings(text)
    return any(s.lower() in part for s in spellings for part in parts)


class RequestsTableModel(RowTableModel[dict[str, Any]]):
    """Stored requests a page at a time, the live tail on top; `RequestsView` shows it."""

    columns = COLUMNS
    sigLoaded = Signal()  # a page is in, or the history has no more matches
    sigSearching = Signal(int)  # requests examined so far while a page is still being found
    sigChoices = Signal(list, list)  # client IDs, recent sources: for the view's filters
    sigCount = Signal(int, bool, bool)  # matches so far, more than the cap, counting is done

    def __init__(self, db: Database, tasks: TaskOwner) -> None:
        super().__init__()
        self._db = db
        self._tasks = tasks
        self._live = 0  # rows added by the live tail since the last reload
        self.filter = queries.RequestFilter()
        self.sort_by = "time"
        self.descending = True
        self._scan: queries.RequestScan | None = None
        self._exhausted = False
        self._loading = False
        self._generation = 0  # bumps on reload, so a stale page or step is dropped
        self._shown: set[str] = set()  # request IDs in the table: each is shown once
        self._tail_from: int | None = None  # the newest stored `id` the table has looked at
        self._version: int | None = None  # `PRAGMA data_version` when the tail last read
        self._tailing = False
        self.count: int | None = None  # matches counted (None: not yet)
        self.count_capped = False

    # -- Qt model API -------------------------------------------------------------------------

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        column = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.ToolTipRole and column == "source":
            # The table shows a file's name; the full path (and row) on hover.
            line = row.get("source_row")
            where = f"{row['source']}, row {line}" if line is not None else row["source"]
            return where if row.get("target", "local") == "local" else f"{where} → {row['target']}"
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
            return source_text(row)
        key = {"client": "client_id"}.get(column, column)
        return row.get(key)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            role == Qt.ItemDataRole.ToolTipRole
            and orientation == Qt.Orientation.Horizontal
            and COLUMNS[section] in SORTABLE
        ):
            return "Click to sort by this column; click again to reverse"
        return super().headerData(section, orientation, role)

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and not self._exhausted and not self._loading

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if self.canFetchMore(parent):
            self._loading = True
            self._tasks.spawn(self.load_page(), "requests-page")

    # -- loading ------------------------------------------------------------------------------

    def row(self, index: int) -> dict[str, Any]:
        return self._rows[index]

    def set_filter(
        self, where: queries.RequestFilter, sort: str = "time", descending: bool = True
    ) -> None:
        self.filter, self.sort_by, self.descending = where, sort, descending
        self.beginResetModel()
        self._rows = []
        self._live = 0
        self._shown = set()
        self._scan = None
        self._exhausted = False
        self._tail_from = None
        self.count, self.count_capped = None, False
        self._generation += 1
        self.endResetModel()
        self._loading = True
        self._tasks.spawn(self.load_page(), "requests-page")

    @property
    def loading(self) -> bool:
        """Whether a page is being read (an empty table may still fill)."""
        return self._loading

    @property
    def live(self) -> bool:
        """Whether new requests join the table as they are stored (newest first only)."""
        return self.sort_by == "time" and self.descending

    async def load_page(self) -> None:
        """Steps the scan until a page is in or nothing more matches; rows show as they come."""
        generation = self._generation
        first = self._scan is None
        try:
            if self._scan is None:
                reader = self._db.reader
                # Read before the first page: a row stored meanwhile is the tail's to find.
                version = await request_search.data_version(reader)
                newest = await request_search.latest_request_id(reader)
                plan = await queries.plan_requests(
                    reader, self.filter, sort=self.sort_by, descending=self.descending
                )
                if generation != self._generation:
                    return
                self._version, self._tail_from = version, newest
                self._scan = queries.RequestScan(reader, plan)
            scan = self._scan
            found = 0
            while found < PAGE and not scan.done:
                # A new filter's first step asks for a screenful: a rare match (text in
                # inputs) shows after a quarter of the rows a full page needs examined.
                want = SCREEN if first and found == 0 else PAGE - found
                page = await scan.step(want)
                if generation != self._generation:
                    return  # a newer filter owns the table now
                found += len(page)
                page = [r for r in page if r["request_id"] not in self._shown]
                self._shown.update(r["request_id"] for r in page)
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
        if first and generation == self._generation and self._scan is not None:
            self._tasks.spawn(self._count(generation, self._scan.plan), "requests-count")

    async def _count(self, generation: int, plan: queries.RequestPlan) -> None:
        """Count the filter's matches (up to `request_search.COUNT_CAP`), a bounded step at a
        time, dropped as soon as another filter owns the table."""
        counter = request_search.RequestCount(self._db.reader, plan)
        while not counter.done:
            await counter.step()
            if generation != self._generation:
                return
            self.count, self.count_capped = counter.count, counter.capped
            self.sigCount.emit(min(counter.count, counter.cap), counter.capped, counter.done)

    # -- the live tail ------------------------------------------------------------------------

    def poll_tail(self) -> None:
        """Look for rows stored since the last look (any writer, any process): cheap when
        nothing was committed. The view calls it while it is shown and scrolled to the top."""
        if self.live and not self._tailing and not self._loading and self._tail_from is not None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # the app's loop has stopped (closing): nothing to read with
            self._tailing = True
            self._tasks.spawn(self._tail(self._generation), "requests-tail")

    async def _tail(self, generation: int) -> None:
        try:
            reader = self._db.reader
            version = await request_search.data_version(reader)
            if version == self._version or self._tail_from is None:
                return
            newest = await request_search.latest_request_id(reader)
            after = self._tail_from
            if newest - after > request_search.TAIL_SPAN:
                if generation == self._generation:
                    self.set_filter(self.filter, self.sort_by, self.descending)
                return
            rows = await request_search.tail_requests(reader, self.filter, after, limit=TAIL_LIMIT)
            pending = [
                r["id"]
                for r in self._rows[:PENDING_SCAN]
                if r.get("status") in PENDING and r.get("id") is not None
            ]
            updated = await request_search.requests_by_id(reader, pending) if pending else []
            if generation != self._generation:
                return
            self._version = version
            self._tail_from = max([newest, *(r["id"] for r in rows)])
            if len(rows) == TAIL_LIMIT:
                # More new matches than a page: the first page is the newest rows now.
                self.set_filter(self.filter, self.sort_by, self.descending)
                return
            self._refresh(updated)
            self._insert_on_top(rows)
        finally:
            self._tailing = False

    def _refresh(self, rows: list[dict[str, Any]]) -> None:
        """Rows shown while pending, read again: a `queued` row that has its result now."""
        by_id = {r["id"]: r for r in rows}
        last = len(self._rows) - 1
        for i, row in enumerate(self._rows[:PENDING_SCAN]):
            fresh = by_id.get(row.get("id"))
            if fresh is not None and fresh["status"] != row["status"] and i <= last:
                self._rows[i] = fresh
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def _insert_on_top(self, rows: list[dict[str, Any]]) -> None:
        rows = [r for r in rows if r["request_id"] not in self._shown]
        if not rows:
            return
        rows.sort(key=lambda r: (r["created_us"], r["id"] or 0), reverse=True)
        self._shown.update(r["request_id"] for r in rows)
        self._live += len(rows)
        if self._live > MAX_LIVE:
            # Older live rows are in the database by now: start again from its newest page
            # rather than let the table (and memory) grow with every request of a long run.
            self.set_filter(self.filter, self.sort_by, self.descending)
            return
        self.beginInsertRows(QModelIndex(), 0, len(rows) - 1)
        self._rows[:0] = rows
        self.endInsertRows()
        if self.count is not None and not self.count_capped:
            self.count += len(rows)
            self.sigCount.emit(self.count, False, True)

    def load_choices(self) -> None:
        """Client IDs and recent sources for the view's filters (`sigChoices`), off the loop."""
        self._tasks.spawn(self._load_choices(), "requests-choices")

    async def _load_choices(self) -> None:
        clients = await queries.client_ids(self._db.reader)
        sources = await queries.recent_sources(self._db.reader)
        self.sigChoices.emit(clients, sources)

    def add_live(self, done: list[Work]) -> None:
        """Requests this app's engine just finished, newest first on top (time order only)."""
        if not self.live:
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
            and (f.target is None or w.target == f.target)
            and (not f.text or _text_matches(f.text, w))
        ]
        self._insert_on_top(rows)
