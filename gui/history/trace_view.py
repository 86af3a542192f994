"""The Trace view: one request as a span tree under a time axis (Jaeger-like), the selected or
hovered span's attributes, its input and output, copy as JSON, and run again.

The tree and its axis are `gui.history.trace_waterfall`; what the tree holds is built from the
stored row by `gui.history.trace_tree` (no Qt). A request made by "Run again" links back to the
one it repeated and says whether the answer changed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.ids import short_id
from engine.remote.load.server_view import interval_at, interval_text
from engine.tasks import TaskOwner
from gui.history.requests_table_model import (
    VALUE_DIGITS,
    answer_label,
    answer_values,
    number_text,
    values_text,
)
from gui.history.trace_tree import (
    SpanNode,
    build_tree,
    decoded,
    ms_text,
    span_details,
    use_server_row,
)
from gui.history.trace_waterfall import SpanTreeView

Lookup = Callable[[str], Awaitable[dict[str, Any] | None]]
# A run's stored summary by its ID (the server's series of a load run is in it).
RunLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
RERUN_KEY = "rerun_of"  # the metadata key a run-again request names its original by


def _pretty(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def compare_values(before: dict[str, float], after: dict[str, float]) -> str:
    """How two regression answers compare: the same values, the same as far as they are
    shown (a last-digit difference, as a batch of another size may give), or which changed."""
    if before == after:
        return f"same values ({values_text(after)})"
    names = [*before, *(name for name in after if name not in before)]
    shown = {
        name: (
            number_text(before[name]) if name in before else "—",
            number_text(after[name]) if name in after else "—",
        )
        for name in names
    }
    changed = [f"{name} {a} → {b}" for name, (a, b) in shown.items() if a != b]
    if not changed:
        return f"same values to {VALUE_DIGITS} digits ({values_text(after)})"
    return "values changed: " + ", ".join(changed)


def compare_answers(original: dict[str, Any], again: dict[str, Any]) -> str:
    """How a run-again's answer compares with its original's, in a few words."""
    before, after = decoded(original.get("output")), decoded(again.get("output"))
    if before is None or after is None:
        return f"was {original.get('status')}, now {again.get('status')}"
    label_a, label_b = answer_label(before), answer_label(after)
    values_a, values_b = answer_values(before), answer_values(after)
    if label_a is None and label_b is None and values_a and values_b:
        return compare_values(values_a, values_b)  # a regressor's: its numbers, named
    if before == after:
        return "same answer" + (f" ({label_b})" if label_b else "")
    if label_a is not None and label_a == label_b:
        return f"same label ({label_b})"  # scores, or the answer's shape, differ
    if label_a is not None and label_b is not None:
        return f"answer changed: {label_a} → {label_b}"
    return "answer changed"


class TraceView(QWidget):
    """The Trace tab: a request's spans, their attributes, its input and output;
    `MainWindow.open_trace` fills it (`show_request`).

    `set_lookup` gives it a way to read other stored requests: a run-again's original (its link
    and the comparison of answers) and, for a request sent to this project's service on the same
    database, the server's own row (its stages with their batch size, inside the wait)."""

    sigRerun = Signal(str, str, dict)  # the original's request ID, model, input payload

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row: dict[str, Any] | None = None
        self.root: SpanNode | None = None
        self._lookup: Lookup | None = None
        self._run_lookup: RunLookup | None = None
        self._tasks: TaskOwner | None = None
        self._shown = 0  # bumped per request shown: a late lookup for an older one is dropped
        self.title = QLabel("Select a request in Requests (Enter opens it here).")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.link = QLabel()
        self.link.setTextFormat(Qt.TextFormat.RichText)
        self.link.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.link.linkActivated.connect(self.open_linked)
        self.link.setVisible(False)
        # A load run's request whose server sent no stages: what the server's own statistics
        # said over the second around it (queue, compute, pending).
        self.server_interval = QLabel()
        self.server_interval.setWordWrap(True)
        self.server_interval.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.server_interval.setVisible(False)
        self.copy_button = QPushButton("Copy as JSON")
        self.copy_button.setToolTip("The whole request, spans included, to the clipboard")
        self.copy_button.clicked.connect(self.copy_json)
        self.rerun_button = QPushButton("Run again")
        self.rerun_button.setToolTip(
            "Send this input again on the local engine, as a new request linked to this one"
        )
        self.rerun_button.clicked.connect(self.rerun)

        self.waterfall = SpanTreeView()
        self.waterfall.sigSpanShown.connect(self.show_span)
        self.details = QTableWidget(0, 2)
        self.details.setHorizontalHeaderLabels(["Attribute", "Value"])
        self.details.verticalHeader().setVisible(False)
        self.details.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.details.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.details.setColumnWidth(0, 110)
        self.details.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.details.setWordWrap(False)
        self.details_box = QGroupBox("Span")
        self.details_box.setMinimumWidth(280)
        QVBoxLayout(self.details_box).addWidget(self.details)

        self.input_text = QPlainTextEdit()
        self.input_text.setReadOnly(True)
        self.output_text = QPlainTextEdit()
        self.output_text.setReadOnly(True)
        self.input_box = QGroupBox("Input")
        QVBoxLayout(self.input_box).addWidget(self.input_text)
        self.output_box = QGroupBox("Output")
        QVBoxLayout(self.output_box).addWidget(self.output_text)

        heading = QVBoxLayout()
        heading.addWidget(self.title)
        heading.addWidget(self.link)
        heading.addWidget(self.server_interval)
        bar = QHBoxLayout()
        bar.addLayout(heading, 1)
        bar.addWidget(self.copy_button)
        bar.addWidget(self.rerun_button)
        spans = QSplitter(Qt.Orientation.Horizontal)
        spans.addWidget(self.waterfall)
        spans.addWidget(self.details_box)
        spans.setStretchFactor(0, 3)
        spans.setStretchFactor(1, 1)
        texts = QSplitter(Qt.Orientation.Horizontal)
        texts.addWidget(self.input_box)
        texts.addWidget(self.output_box)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(spans)
        body.addWidget(texts)
        body.setStretchFactor(0, 3)
        body.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(body, 1)

    def set_lookup(
        self, lookup: Lookup, tasks: TaskOwner, run_lookup: RunLookup | None = None
    ) -> None:
        """How to read another stored request by its ID (async, on the reader connection), and
        a run's summary by its ID."""
        self._lookup, self._tasks, self._run_lookup = lookup, tasks, run_lookup

    # -- showing a request -------------------------------------------------------------------------

    def show_request(self, row: dict[str, Any]) -> None:
        self.row = row
        self._shown += 1
        latency = row.get("latency_us")
        took = "" if latency is None else f" · {ms_text(latency)}"
        where = row.get("target") if row.get("target") not in (None, "", "local") else None
        self.title.setText(
            f"{row['request_id']} · {row['status']} · {row.get('model') or '—'}"
            f"{' @ ' + str(where) if where else ''}{took}"
        )
        self.root = build_tree(row)
        self.waterfall.set_root(self.root)
        self.server_interval.setVisible(False)
        self.input_text.setPlainText(_pretty(decoded(row.get("input"))))
        output = decoded(row.get("output"))
        error = decoded(row.get("error"))
        self.output_box.setTitle(
            "Output" if output is not None or error is None else "Output (error)"
        )
        self.output_text.setPlainText(_pretty(output if output is not None else error))
        # A remote target's request runs again on that target (a `json` one may name no model).
        self.rerun_button.setEnabled(
            bool(row.get("model") or where) and isinstance(decoded(row.get("input")), dict)
        )
        self.rerun_button.setToolTip(
            f"Send this input to {where} again, as a new request linked to this one"
            if where
            else "Send this input again on the local engine, as a new request linked to this one"
        )
        metadata = decoded(row.get("metadata"))
        metadata = metadata if isinstance(metadata, dict) else {}
        original = metadata.get(RERUN_KEY)
        self._set_link(str(original) if original else None, None)
        if self._lookup is None:
            return
        if original:
            self._spawn(self._compare_with(str(original), self._shown), "trace-original")
        server_id = metadata.get("server_request_id")
        if server_id and row.get("source") != "rerun":
            self._spawn(self._nest_server_row(str(server_id), self._shown), "trace-server")
        has_stages = any(n.side == "server" for n in self.root.walk())
        run_id, ended = row.get("run_id"), row.get("ended_us")
        if self._run_lookup is not None and run_id and isinstance(ended, int) and not has_stages:
            self._spawn(self._show_server_interval(str(run_id), ended, self._shown), "trace-run")

    def _set_link(self, original: str | None, verdict: str | None) -> None:
        if original is None:
            self.link.setVisible(False)
            self.link.clear()
            return
        text = f'run again of <a href="{original}">{short_id(original)}</a>'
        self.link.setText(text + (f" · {verdict}" if verdict else ""))
        self.link.setToolTip(f"Open the request this one repeated ({original})")
        self.link.setVisible(True)

    def show_span(self, node: SpanNode | None) -> None:
        """Fill the details pane with `node`'s attributes (the selected or hovered span)."""
        rows = (
            [] if node is None or self.root is None else span_details(node, self.root.duration_us)
        )
        self.details_box.setTitle("Span" if node is None else f"Span: {node.name}")
        self.details.setRowCount(len(rows))
        for i, (key, value) in enumerate(rows):
            self.details.setItem(i, 0, QTableWidgetItem(key))
            cell = QTableWidgetItem(value)
            cell.setToolTip(value)  # a long ID or message, whole
            self.details.setItem(i, 1, cell)

    def detail_rows(self) -> dict[str, str]:
        """The details pane as {attribute: value} (what the user reads there)."""
        table = self.details
        cells = [(table.item(r, 0), table.item(r, 1)) for r in range(table.rowCount())]
        return {k.text(): v.text() for k, v in cells if k is not None and v is not None}

    # -- other stored requests ---------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        assert self._tasks is not None
        self._tasks.spawn(coro, name)

    async def _compare_with(self, original_id: str, shown: int) -> None:
        assert self._lookup is not None
        original = await self._lookup(original_id)
        if shown != self._shown or self.row is None:
            return
        verdict = "not stored" if original is None else compare_answers(original, self.row)
        self._set_link(original_id, verdict)

    async def _nest_server_row(self, server_id: str, shown: int) -> None:
        assert self._lookup is not None
        server_row = await self._lookup(server_id)
        if shown != self._shown or server_row is None or self.root is None:
            return
        if use_server_row(self.root, server_row):
            self.waterfall.set_root(self.root)

    async def _show_server_interval(self, run_id: str, ended_us: int, shown: int) -> None:
        assert self._run_lookup is not None
        summary = await self._run_lookup(run_id)
        if shown != self._shown or not summary:
            return
        series = summary.get("server_series")
        interval = interval_at(series, ended_us) if isinstance(series, list) else None
        if interval is None:
            return
        source = ", ".join((summary.get("server") or {}).get("in_use") or []) or "its statistics"
        self.server_interval.setText(
            f"The server's own figures for that second (from {source}): " + interval_text(interval)
        )
        self.server_interval.setVisible(True)

    def open_linked(self, request_id: str) -> None:
        """The link to a run-again's original was clicked: show that request here."""
        if self._lookup is not None:
            self._spawn(self._open(request_id), "trace-open")

    async def _open(self, request_id: str) -> None:
        assert self._lookup is not None
        row = await self._lookup(request_id)
        if row is None:
            self.link.setText(f"request {short_id(request_id)} is not stored")
            return
        self.show_request(row)

    # -- actions -----------------------------------------------------------------------------------

    def as_json(self) -> str:
        if self.row is None:
            return "{}"
        keys = (
            "request_id",
            "status",
            "model",
            "client_id",
            "source",
            "target",
            "created_us",
            "latency_us",
            "input",
            "metadata",
            "output",
            "error",
            "spans",
        )
        return json.dumps({k: decoded(self.row.get(k)) for k in keys}, indent=2)

    def copy_json(self) -> None:
        QGuiApplication.clipboard().setText(self.as_json())

    def rerun(self) -> None:
        """Ask for this request to run again, where it ran (`gui.history.rerun`)."""
        if self.row is None or not self.rerun_button.isEnabled():
            return
        values = decoded(self.row.get("input"))
        if isinstance(values, dict):
            self.sigRerun.emit(str(self.row["request_id"]), self.row.get("model") or "", values)
