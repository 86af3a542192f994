"""The Targets table: each stored target's settings beside its prober's state, coloured.

Never a secret: credential headers are `***` in the store, the token lives in the token store,
and the name's tooltip only says where the token is kept. State cells change as `probe_host`
emits its throttled snapshots; only the changed rows' state columns are repainted.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor

from engine.remote.prober import ProberSnapshot, plain_reason
from engine.remote.target_store import StoredTarget
from engine.remote.targets import Target
from gui.shared.table_model import RIGHT, Index, RowTableModel
from gui.shared.when import when_text
from gui.targets.status_timeline import STATE_COLOURS
from gui.targets.target_dialog import WHERE_TEXT

COLUMNS = ("name", "URL", "protocol", "model", "state", "reason", "latency ms", "changed")
_STATE_COLUMNS = (COLUMNS.index("state"), COLUMNS.index("changed"))


class TargetsTableModel(RowTableModel[StoredTarget]):
    """Stored targets beside their probers' state as cells; `TargetsView` shows and feeds it."""

    columns = COLUMNS

    def __init__(self, where: str = "memory", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.where = where
        self.snaps: dict[str, ProberSnapshot] = {}

    def set_targets(self, targets: list[StoredTarget]) -> None:
        self.beginResetModel()
        self._rows = list(targets)
        names = {s.target.name for s in targets}
        self.snaps = {k: v for k, v in self.snaps.items() if k in names}
        self.endResetModel()

    def update_snapshots(self, snaps: dict[str, ProberSnapshot]) -> None:
        self.snaps.update(snaps)
        for row, stored in enumerate(self._rows):
            if stored.target.name in snaps:
                first = self.index(row, _STATE_COLUMNS[0])
                last = self.index(row, _STATE_COLUMNS[1])
                self.dataChanged.emit(first, last)

    def target(self, row: int) -> StoredTarget:
        return self._rows[row]

    def row_of(self, name: str) -> int:
        return next((i for i, s in enumerate(self._rows) if s.target.name == name), -1)

    def state(self, name: str) -> str:
        snap = self.snaps.get(name)
        return "unknown" if snap is None else snap.state

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        stored = self._rows[index.row()]
        t = stored.target
        column = COLUMNS[index.column()]
        snap = self.snaps.get(t.name)
        state = "unknown" if snap is None else snap.state
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(column, t, snap, state)
        if column == "state" and role == Qt.ItemDataRole.DecorationRole:
            return QColor(STATE_COLOURS[state])
        if column == "state" and role == Qt.ItemDataRole.ForegroundRole:
            return QColor(STATE_COLOURS[state])
        if role == Qt.ItemDataRole.ToolTipRole:
            if column in ("state", "reason") and snap is not None and snap.last is not None:
                # The plain words, then the probe's own terms (what the logs and CLI say).
                return f"{state}: {plain_reason(snap.last)}\n({snap.last.detail})"
            if column == "name":
                return self._secrets_tip(stored)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == "latency ms":
            return int(RIGHT)
        return None

    @staticmethod
    def _text(column: str, t: Target, snap: ProberSnapshot | None, state: str) -> str:
        if column == "name":
            return t.name
        if column == "URL":
            return t.redacted_url()
        if column == "protocol":
            return t.protocol
        if column == "model":
            return t.model or "—"
        if column == "state":
            return state
        if column == "reason":
            # Why it is down or degraded, beside the state (not only in a passing status bar).
            last = snap.last if snap is not None else None
            return "" if last is None or last.state == "up" else plain_reason(last)
        if column == "latency ms":
            last = snap.last if snap is not None else None
            probe = last.result("live") if last is not None else None
            return "—" if probe is None else f"{probe.latency_us / 1000:.1f}"
        return when_text(snap.since_us if snap is not None else None, "short")

    def _secrets_tip(self, stored: StoredTarget) -> str:
        lines = []
        if stored.has_token:
            lines.append(f"bearer token {WHERE_TEXT.get(self.where, self.where)}")
        if stored.missing_secrets:
            missing = ", ".join(stored.missing_secrets)
            lines.append(f"not available in this session: {missing} (edit to type again)")
        return "\n".join(lines) or "no token"
