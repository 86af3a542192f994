"""The Requests view: filters over the live history table, and "run again" for any request
(an interrupted one included) with the input it was stored with."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gui.requests_model import RequestsTableModel
from storage.queries import RequestFilter

STATUSES = ("any status", "ok", "rejected", "failed", "queued", "interrupted")


class RequestsView(QWidget):
    sigRerun = Signal(str, dict)  # model, input payload
    sigOpen = Signal(dict)  # a request row to show in the Trace view

    def __init__(
        self, model: RequestsTableModel, model_names: list[str], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.table_model = model
        self.status_box = QComboBox()
        self.status_box.addItems(STATUSES)
        self.model_box = QComboBox()
        self.model_box.addItems(["any model", *model_names])
        self.text_edit = QLineEdit()
        self.text_edit.setPlaceholderText("request ID, input or error text")
        self.sort_box = QComboBox()
        self.sort_box.addItems(["newest first", "slowest first"])
        self.rerun_button = QPushButton("Run again")
        self.rerun_button.setToolTip("Send the selected request's input again (Ctrl+R)")
        self.rerun_button.setShortcut("Ctrl+R")
        self.rerun_button.clicked.connect(self.rerun_selected)
        for box in (self.status_box, self.model_box, self.sort_box):
            box.currentIndexChanged.connect(self.apply_filter)
        self.text_edit.returnPressed.connect(self.apply_filter)
        self.table = QTableView()
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        for column, width in enumerate((100, 80, 70, 70, 160, 80, 260)):
            self.table.setColumnWidth(column, width)
        bar = QHBoxLayout()
        for widget in (self.status_box, self.model_box, self.sort_box):
            bar.addWidget(widget)
        bar.addWidget(self.text_edit, 1)
        bar.addWidget(self.rerun_button)
        self.table.activated.connect(lambda index: self.sigOpen.emit(model.row(index.row())))
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table)

    def current_filter(self) -> tuple[RequestFilter, str]:
        status = self.status_box.currentText()
        model = self.model_box.currentText()
        where = RequestFilter(
            status=None if status == STATUSES[0] else status,
            model=None if model == "any model" else model,
            text=self.text_edit.text().strip() or None,
        )
        return where, "time" if self.sort_box.currentIndex() == 0 else "latency"

    def apply_filter(self) -> None:
        where, sort = self.current_filter()
        self.table_model.set_filter(where, sort)

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
