"""The Requests view: filters over the live history table, and "run again" for any request
(an interrupted one included) with the input it was stored with.

Every filter is answered through the table model, off the loop; the client list and the source
suggestions come from bounded index reads (`storage.queries.client_ids`, `recent_sources`),
refreshed each time the view is shown.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QStringListModel, Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCompleter,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.history.requests_table_model import RequestsTableModel
from gui.shared.fields import choice_box, text_box
from gui.shared.tables import row_table
from storage.queries import RequestFilter

STATUSES = ("any status", "ok", "rejected", "failed", "queued", "interrupted")
ANY_CLIENT = "any client"


class RequestsView(QWidget):
    """The Requests tab: filters over the table model and "run again"; built by `gui.app`."""

    sigRerun = Signal(str, dict)  # model, input payload
    sigOpen = Signal(dict)  # a request row to show in the Trace view

    def __init__(
        self, model: RequestsTableModel, model_names: list[str], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.table_model = model
        self.status_box = choice_box(
            STATUSES,
            "Only requests in this state; interrupted ones were cut short by a crash and can be "
            "run again",
        )
        self.model_box = choice_box(["any model", *model_names], "Only requests to this model")
        self.client_box = choice_box([ANY_CLIENT], "Only requests from this client ID")
        self.source_edit = text_box(
            "any source",
            "Only requests from this source: a file's full path, form, or another origin "
            "(suggestions: recent ones); Enter to apply",
            clearable=True,
        )
        self._sources = QStringListModel(self)
        completer = QCompleter(self._sources, self.source_edit)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.source_edit.setCompleter(completer)
        self.text_edit = text_box(
            "request ID, input or error text",
            "A request ID or its beginning (found at once), or text to find in inputs and "
            "errors (searched in steps, newest first); Enter to apply",
            clearable=True,
        )
        self.sort_box = choice_box(
            ["newest first", "slowest first"],
            "Newest first, or slowest first (requests without a latency, such as queued or "
            "interrupted ones, are left out)",
        )
        self.search_label = QLabel()
        self.rerun_button = QPushButton("Run again")
        self.rerun_button.setToolTip("Send the selected request's input again (Ctrl+R)")
        self.rerun_button.setShortcut("Ctrl+R")
        self.rerun_button.clicked.connect(self.rerun_selected)
        for box in (self.status_box, self.model_box, self.client_box, self.sort_box):
            box.currentIndexChanged.connect(self.apply_filter)
        self.text_edit.returnPressed.connect(self.apply_filter)
        self.source_edit.returnPressed.connect(self.apply_filter)
        model.sigSearching.connect(self._on_searching)
        model.sigLoaded.connect(self._on_loaded)
        model.sigChoices.connect(self._on_choices)
        self.table = row_table(model, (100, 80, 70, 70, 160, 80, 260))
        bar = QHBoxLayout()
        for widget in (self.status_box, self.model_box, self.client_box):
            bar.addWidget(widget)
        bar.addWidget(self.source_edit, 1)
        bar.addWidget(self.sort_box)
        bar.addWidget(self.text_edit, 2)
        bar.addWidget(self.search_label)
        bar.addWidget(self.rerun_button)
        self.table.activated.connect(lambda index: self.sigOpen.emit(model.row(index.row())))
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table)

    def current_filter(self) -> tuple[RequestFilter, str]:
        status = self.status_box.currentText()
        model = self.model_box.currentText()
        client = self.client_box.currentText()
        where = RequestFilter(
            status=None if status == STATUSES[0] else status,
            model=None if model == "any model" else model,
            client_id=None if client == ANY_CLIENT else client,
            source=self.source_edit.text().strip() or None,
            text=self.text_edit.text().strip() or None,
        )
        return where, "time" if self.sort_box.currentIndex() == 0 else "latency"

    def apply_filter(self) -> None:
        where, sort = self.current_filter()
        self.search_label.clear()
        self.table_model.set_filter(where, sort)

    # -- filter choices and search state ------------------------------------------------------

    def refresh_choices(self) -> None:
        self.table_model.load_choices()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh_choices()  # new clients and files since the view was last shown

    def _on_choices(self, clients: list[str], sources: list[str]) -> None:
        current = self.client_box.currentText()
        self.client_box.blockSignals(True)  # refreshing the list is not a new filter
        try:
            self.client_box.clear()
            self.client_box.addItems([ANY_CLIENT, *clients])
            if self.client_box.findText(current) < 0:
                self.client_box.addItem(current)  # a filter on a client not stored yet stays
            self.client_box.setCurrentText(current)
        finally:
            self.client_box.blockSignals(False)
        # Full paths, matched anywhere: typing a file's name (what the table shows) finds it.
        self._sources.setStringList(sources)

    def _on_searching(self, examined: int) -> None:
        self.search_label.setText(f"searching… {examined:,} examined")

    def _on_loaded(self) -> None:
        model = self.table_model
        self.search_label.setText("no matching requests" if model.rowCount() == 0 else "")

    # -- run again ----------------------------------------------------------------------------

    def selected_row(self) -> dict[str, Any] | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.row(rows[0].row()) if rows else None

    def rerun_selected(self) -> None:
        row = self.selected_row()
        if row is None or not row.get("model") or not row.get("input"):
            return
        payload = row["input"]
        try:
            values = json.loads(payload) if isinstance(payload, str) else payload
        except ValueError:
            return  # a rejected row's raw text: nothing valid to send again
        if isinstance(values, dict):
            self.sigRerun.emit(row["model"], values)
