"""The window's side pane: where requests go, the local engine and every saved remote target,
each with its live state (a coloured dot and a short reason).

Choosing an entry scopes the views to it (`sigScopeChanged`: a target's name, or None for the
local engine). The list follows the Targets view (`sigTargetsChanged`) and the probers' host
(`sigSnapshots`, `sigStateChanged`, `sigRemoved`); it never grows wider than its place: long
reasons are elided and shown whole in the tooltip.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QWidget

from engine.remote.prober import plain_error, plain_reason
from gui.targets.status_timeline import STATE_COLOURS as TARGET_COLOURS

if TYPE_CHECKING:
    from engine.remote.prober import ProberSnapshot
    from engine.remote.target_store import StoredTarget

# The Targets table's and the status timeline's colours, and the local engine's while loading.
STATE_COLOURS = {**TARGET_COLOURS, "loading": TARGET_COLOURS["unknown"]}
LOCAL = "Local engine"
MIN_WIDTH = 170  # a name and a short reason stay readable; a restored narrower width is ignored
_DOT_PX = 10


def _dot(colour: str) -> QIcon:
    """A filled circle in the state's colour (cached per colour by the caller)."""
    pixmap = QPixmap(_DOT_PX, _DOT_PX)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(colour))
    painter.drawEllipse(0, 0, _DOT_PX, _DOT_PX)
    painter.end()
    return QIcon(pixmap)


class SidePane(QListWidget):
    """The local engine and the saved targets with their state; `MainWindow` owns it and
    relays `sigScopeChanged`."""

    sigScopeChanged = Signal(object)  # str: a target's name; None: the local engine

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(MIN_WIDTH)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.setWordWrap(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setIconSize(QSize(_DOT_PX, _DOT_PX))
        self.setToolTip("Where requests go: choosing one scopes Predict, Requests, Monitor, Load")
        self._icons: dict[str, QIcon] = {}
        # name -> (state, reason); the local engine's entry is keyed by None.
        self.states: dict[str | None, tuple[str, str]] = {None: ("loading", "models loading…")}
        self._terms: dict[str | None, str] = {}  # the probes' own words for a state, by name
        self._scope: str | None = None
        local = QListWidgetItem(LOCAL)
        local.setData(Qt.ItemDataRole.UserRole, None)
        self.addItem(local)
        self._paint(local)
        self.setCurrentRow(0)
        self.currentItemChanged.connect(self._chosen)

    @property
    def scope(self) -> str | None:
        return self._scope

    def names(self) -> list[str]:
        """The remote targets listed, in order."""
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(1, self.count())]

    def item_of(self, name: str | None) -> QListWidgetItem | None:
        for i in range(self.count()):
            item = self.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                return item
        return None

    def select(self, name: str | None) -> None:
        item = self.item_of(name)
        if item is not None:
            self.setCurrentItem(item)

    # -- what the window and the targets feed in -------------------------------------------------

    def set_local_state(self, state: str, reason: str) -> None:
        self.states[None] = (state, reason)
        self._paint(self.item(0))

    def set_targets(self, targets: list[StoredTarget]) -> None:
        """The saved targets, after every load, save or removal (the Targets view's signal)."""
        names = [t.target.name for t in targets]
        if names == self.names():
            return
        self.blockSignals(True)  # rebuilding is not the user choosing
        try:
            while self.count() > 1:
                self.takeItem(1)
            for name in names:
                item = QListWidgetItem(name)
                item.setData(Qt.ItemDataRole.UserRole, name)
                self.states.setdefault(name, ("unknown", "not probed yet"))
                self.addItem(item)
                self._paint(item)
            kept = self.item_of(self._scope)
            self.setCurrentItem(kept if kept is not None else self.item(0))
        finally:
            self.blockSignals(False)
        if self._scope is not None and self._scope not in names:
            self._scope = None  # the chosen target was removed: back to the local engine
            self.sigScopeChanged.emit(None)

    def on_snapshots(self, snapshots: dict[str, ProberSnapshot]) -> None:
        for name, snap in snapshots.items():
            if snap.last is None:
                self._set_state(name, snap.state, "not probed yet")
            else:
                self._set_state(name, snap.state, plain_reason(snap.last), snap.last.detail)

    def on_state_changed(self, name: str, _old: str, new: str, detail: str) -> None:
        # `detail` is the probes' own terms ("live: connect_refused"); the pane says it in
        # words, as the Targets table does, and keeps the terms for the tooltip.
        _kind, _, error = detail.partition(": ")
        self._set_state(name, new, plain_error(error) if error else detail, detail)

    def on_removed(self, name: str) -> None:
        self.states.pop(name, None)

    def _set_state(self, name: str, state: str, reason: str, terms: str = "") -> None:
        if self.states.get(name) == (state, reason) and self._terms.get(name, "") == terms:
            return
        self.states[name] = (state, reason)
        self._terms[name] = terms
        item = self.item_of(name)
        if item is not None:
            self._paint(item)

    # -- drawing -------------------------------------------------------------------------------

    def _paint(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        state, reason = self.states.get(name, ("unknown", ""))
        title = LOCAL if name is None else name
        short = state if state == "up" or not reason else f"{state}: {reason}"
        if name is None:
            short = reason
        # Two lines, each elided to the pane's width by the view; the tooltip has it whole.
        item.setText(f"{title}\n{short}")
        terms = self._terms.get(name, "")
        tip = f"{title}: {state}" + (f" ({reason})" if reason else "")
        item.setToolTip(tip + (f"\nprobe: {terms}" if terms and terms != reason else ""))
        colour = STATE_COLOURS.get(state, STATE_COLOURS["unknown"])
        if colour not in self._icons:
            self._icons[colour] = _dot(colour)
        item.setIcon(self._icons[colour])

    def _chosen(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if current is None:
            return
        scope = current.data(Qt.ItemDataRole.UserRole)
        if scope != self._scope:
            self._scope = scope
            self.sigScopeChanged.emit(scope)
