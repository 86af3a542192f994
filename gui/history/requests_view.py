"""The Requests view: filters over the live history table, and "run again" for any request
(an interrupted one included) with the input it was stored with.

Every filter is answered through the table model, off the loop; the text filter applies as it
is typed (after a short pause) and says how many requests match. Column headers sort (on the
server: `RequestsTableModel.SORTABLE`). While the view is shown and scrolled to its top, it
asks the model twice a second for rows any writer stored since (`poll_tail`). `set_scope`
narrows it to one target's requests (the side pane); the target box widens it again. The
client list and the source suggestions come from bounded index reads
(`storage.queries.client_ids`, `recent_sources`), refreshed each time the view is shown.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QStringListModel, Qt, QTimer, Signal
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QCompleter,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.history.requests_table_model import COLUMNS, SORTABLE, RequestsTableModel
from gui.shared.fields import choice_box, text_box
from gui.shared.tables import row_table
from storage.queries import RequestFilter

if TYPE_CHECKING:
    from engine.work import Work

STATUSES = ("any status", "ok", "rejected", "failed", "queued", "interrupted")
ANY_CLIENT = "any client"
EVERY_TARGET = "every target"
LOCAL = "local engine"
LOCAL_TARGET = "local"  # the stored `target` of the local engine's requests
TYPING_PAUSE_MS = 150  # the text filter applies this long after the last keystroke
TAIL_EVERY_MS = 500  # how often the view asks for rows stored since


def count_text(count: int, capped: bool, done: bool) -> str:
    """ "1,234 matches", "10,000+ matches", or a count still going ("1,234+ so far")."""
    if capped:
        return f"{count:,}+ matches"
    if not done:
        return f"{count:,}+ matches so far…"
    return "1 match" if count == 1 else f"{count:,} matches"


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
        self.target_box = choice_box(
            [EVERY_TARGET, LOCAL],
            "Only requests to this target: the local engine (this app, inferdeck serve and "
            "predict), or a remote target picked in the side pane; every target shows all",
        )
        self.text_edit = text_box(
            "request ID, label, input or error text",
            "A request ID or its beginning, or text to find in inputs, outputs (labels) and "
            "errors, JSON as the Trace shows it; applies as you type",
            clearable=True,
        )
        self.search_label = QLabel()
        self.count_label = QLabel()
        self.count_label.setToolTip("How many stored requests match the filters")
        self.empty_label = QLabel()
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.hide()
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(TYPING_PAUSE_MS)
        self._typing.timeout.connect(self.apply_filter)
        self._tail_timer = QTimer(self)
        self._tail_timer.setInterval(TAIL_EVERY_MS)
        self._tail_timer.timeout.connect(self._poll_tail)
        self.rerun_button = QPushButton("Run again")
        self.rerun_button.setToolTip(
            "Send the selected request's input again, where it was sent (Ctrl+R)"
        )
        self.rerun_button.setShortcut("Ctrl+R")
        self.rerun_button.clicked.connect(self.rerun_selected)
        self.sort_by, self.descending = "time", True
        for box in (self.status_box, self.model_box, self.client_box, self.target_box):
            box.currentIndexChanged.connect(self.apply_filter)
        self.text_edit.textChanged.connect(lambda _text: self._typing.start())
        self.text_edit.returnPressed.connect(self.apply_filter)
        self.source_edit.returnPressed.connect(self.apply_filter)
        model.sigSearching.connect(self._on_searching)
        model.sigLoaded.connect(self._on_loaded)
        model.sigChoices.connect(self._on_choices)
        model.sigCount.connect(self._on_count)
        model.modelReset.connect(self._on_loaded)
        model.rowsInserted.connect(self._on_loaded)
        self.table = row_table(model, (100, 80, 70, 70, 160, 80, 260))
        header = self.table.horizontalHeader()
        header.setSectionsClickable(True)
        header.setSortIndicatorShown(True)
        header.setSortIndicator(COLUMNS.index("time"), Qt.SortOrder.DescendingOrder)
        header.sectionClicked.connect(self.sort_by_column)
        bar = QHBoxLayout()
        for widget in (self.target_box, self.status_box, self.model_box, self.client_box):
            bar.addWidget(widget)
        bar.addWidget(self.source_edit, 1)
        bar.addWidget(self.text_edit, 2)
        bar.addWidget(self.rerun_button)
        # Under the table, a line of its own: the empty state, search progress and the count
        # (the filter bar keeps its width for the filters at 1024 px).
        footer = QHBoxLayout()
        footer.addWidget(self.empty_label, 1)
        footer.addWidget(self.search_label)
        footer.addWidget(self.count_label)
        self.table.activated.connect(lambda index: self.sigOpen.emit(model.row(index.row())))
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        layout.addLayout(footer)

    def current_filter(self) -> tuple[RequestFilter, str]:
        status = self.status_box.currentText()
        model = self.model_box.currentText()
        client = self.client_box.currentText()
        target = self.target_box.currentText()
        where = RequestFilter(
            status=None if status == STATUSES[0] else status,
            model=None if model == "any model" else model,
            client_id=None if client == ANY_CLIENT else client,
            source=self.source_edit.text().strip() or None,
            text=self.text_edit.text().strip() or None,
            target=None if target == EVERY_TARGET else "local" if target == LOCAL else target,
        )
        return where, self.sort_by

    def apply_filter(self) -> None:
        self._typing.stop()  # Enter (or another filter) applies the text at once
        where, sort = self.current_filter()
        self.search_label.clear()
        self.count_label.clear()
        self.table_model.set_filter(where, sort, self.descending)

    def set_scope(self, name: str | None) -> None:
        """Narrow History to one remote target's requests (None: the local engine's); the
        target box keeps the choice and widens it again ("every target")."""
        text = LOCAL if name is None else name
        if self.target_box.findText(text) < 0:
            self.target_box.addItem(text)
        if self.target_box.currentText() == text:
            return
        self.target_box.setCurrentText(text)  # applies the filter (currentIndexChanged)

    def sort_by_column(self, column: int) -> None:
        """A header click: sort by that column on the server; again reverses the order."""
        found = SORTABLE.get(COLUMNS[column])
        header = self.table.horizontalHeader()
        if found is None:
            # Client and request ID do not sort: keep the indicator where the order is.
            current = next(
                i for i, c in enumerate(COLUMNS) if SORTABLE.get(c, ("",))[0] == self.sort_by
            )
            order = Qt.SortOrder.DescendingOrder if self.descending else Qt.SortOrder.AscendingOrder
            header.setSortIndicator(current, order)
            return
        sort, first_descending = found
        self.descending = not self.descending if sort == self.sort_by else first_descending
        self.sort_by = sort
        order = Qt.SortOrder.DescendingOrder if self.descending else Qt.SortOrder.AscendingOrder
        header.setSortIndicator(column, order)
        self.apply_filter()

    # -- filter choices and search state ------------------------------------------------------

    def refresh_choices(self) -> None:
        self.table_model.load_choices()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh_choices()  # new clients and files since the view was last shown
        self._tail_timer.start()
        self._poll_tail()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._tail_timer.stop()  # a hidden view reads nothing; it catches up when shown

    def add_live(self, done: list[Work]) -> None:
        """Requests this app's engine just finished, on top while the view is shown. A hidden
        view takes none: during a drop that was thousands of rows a second made for a table
        nobody saw. When shown, its tail reads everything since from the database."""
        if self.isVisible():
            self.table_model.add_live(done)

    def _poll_tail(self) -> None:
        # Scrolled down, rows added on top would move what the user is reading: the tail
        # waits until the view is back at the top (it then reads everything since).
        if self.table.verticalScrollBar().value() == 0:
            self.table_model.poll_tail()

    def set_model_names(self, names: list[str]) -> None:
        """The model filter's choices after a reload; the chosen model stays chosen (a removed
        one too: its stored requests are still there to find)."""
        box = self.model_box
        chosen = box.currentText()
        box.blockSignals(True)  # refilling is not the user choosing: no new query
        box.clear()
        box.addItems(
            ["any model", *names, *([chosen] if chosen not in ("any model", *names) else [])]
        )
        box.setCurrentText(chosen)
        box.blockSignals(False)

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

    def _on_count(self, count: int, capped: bool, done: bool) -> None:
        self.count_label.setText(count_text(count, capped, done))

    def _on_loaded(self, *_: object) -> None:
        """The empty state is a label under the table, never a row of it."""
        model = self.table_model
        if model.rowCount() > 0:
            self.search_label.clear()
            self.empty_label.hide()
            return
        if model.canFetchMore() or model.loading:
            self.empty_label.hide()  # still looking
            return
        self.search_label.clear()
        where, _sort = self.current_filter()
        filtered = where != RequestFilter()
        self.empty_label.setText(
            "No requests match these filters." if filtered else "No requests stored yet."
        )
        self.empty_label.show()

    # -- run again ----------------------------------------------------------------------------

    def selected_row(self) -> dict[str, Any] | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.row(rows[0].row()) if rows else None

    def rerun_selected(self) -> None:
        row = self.selected_row()
        remote = row is not None and row.get("target") not in (None, "", LOCAL_TARGET)
        if row is None or not (row.get("model") or remote) or not row.get("input"):
            return  # (a remote target's request runs again there, model or not)
        payload = row["input"]
        try:
            values = json.loads(payload) if isinstance(payload, str) else payload
        except ValueError:
            return  # a rejected row's raw text: nothing valid to send again
        if isinstance(values, dict):
            self.sigRerun.emit(row.get("model") or "", values)
