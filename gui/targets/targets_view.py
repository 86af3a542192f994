"""The Targets view: the stored remote targets, their health now, and add / edit / remove.

The table shows each target's settings (never a secret: credential headers are `***` in the
store, and the token lives in the token store) beside its prober's state, coloured, the last
probe's latency and when the state last changed. State cells change as `probe_host` emits
its throttled snapshots; only the changed rows' state columns are repainted.

Adding or editing opens `TargetDialog` with `open()`; what it submits is saved through
`TargetStore`, and the target's prober is (re)started with the new settings; a refusal from
the store (a name taken) goes back into the still-open dialog. Removing asks first (a message
box opened with `open()` and awaited through a future), then stops the prober and forgets the
target, its secrets and its probe history. The probe interval is a spin box, kept in QSettings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSettings,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.remote.prober import ProberSnapshot
from engine.remote.secrets import TokenStore
from engine.remote.target_store import StoredTarget, TargetError, TargetStore
from engine.remote.targets import Target
from engine.stats import RunRecorder
from engine.tasks import TaskOwner
from gui.predict.remote_predict import RemotePredict
from gui.shared.tables import row_table
from gui.targets.probe_host import DEFAULT_INTERVAL_S, Notifier, ProbeHost
from gui.targets.status_timeline import STATE_COLOURS, StatusTimeline
from gui.targets.target_dialog import WHERE_TEXT, TargetDialog
from storage import Database

if TYPE_CHECKING:
    from gui.main_window import MainWindow

COLUMNS = ("name", "URL", "protocol", "model", "state", "latency ms", "changed")
WIDTHS = (140, 260, 80, 100, 90, 90, 140)
_STATE_COLUMNS = (COLUMNS.index("state"), COLUMNS.index("changed"))
INTERVAL_KEY = "targets/interval_s"

# (text, shortcut, TargetsView method): the menu bar shows these (gui.main_window).
ACTIONS = (
    ("&Add target…", "Ctrl+Shift+A", "add_target"),
    ("&Edit target…", "Ctrl+Shift+E", "edit_target"),
    ("&Remove target", "Ctrl+Shift+D", "remove_target"),
    ("&Probe now", "Ctrl+Shift+P", "probe_target"),
)

_Index = QModelIndex | QPersistentModelIndex


def _when(us: int | None) -> str:
    if us is None:
        return "—"
    at = dt.datetime.fromtimestamp(us / 1e6)
    fmt = "%H:%M:%S" if at.date() == dt.date.today() else "%Y-%m-%d %H:%M"
    return at.strftime(fmt)


class TargetsTableModel(QAbstractTableModel):
    def __init__(self, where: str = "memory", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.where = where
        self.targets: list[StoredTarget] = []
        self.snaps: dict[str, ProberSnapshot] = {}

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.targets)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def set_targets(self, targets: list[StoredTarget]) -> None:
        self.beginResetModel()
        self.targets = list(targets)
        names = {s.target.name for s in targets}
        self.snaps = {k: v for k, v in self.snaps.items() if k in names}
        self.endResetModel()

    def update_snapshots(self, snaps: dict[str, ProberSnapshot]) -> None:
        self.snaps.update(snaps)
        for row, stored in enumerate(self.targets):
            if stored.target.name in snaps:
                first = self.index(row, _STATE_COLUMNS[0])
                last = self.index(row, _STATE_COLUMNS[1])
                self.dataChanged.emit(first, last)

    def target(self, row: int) -> StoredTarget:
        return self.targets[row]

    def row_of(self, name: str) -> int:
        return next((i for i, s in enumerate(self.targets) if s.target.name == name), -1)

    def state(self, name: str) -> str:
        snap = self.snaps.get(name)
        return "unknown" if snap is None else snap.state

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        stored = self.targets[index.row()]
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
            if column == "state" and snap is not None and snap.last is not None:
                return snap.last.detail
            if column == "name":
                return self._secrets_tip(stored)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == "latency ms":
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
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
        if column == "latency ms":
            last = snap.last if snap is not None else None
            probe = last.result("live") if last is not None else None
            return "—" if probe is None else f"{probe.latency_us / 1000:.1f}"
        return _when(snap.since_us if snap is not None else None)

    def _secrets_tip(self, stored: StoredTarget) -> str:
        lines = []
        if stored.has_token:
            lines.append(f"bearer token {WHERE_TEXT.get(self.where, self.where)}")
        if stored.missing_secrets:
            missing = ", ".join(stored.missing_secrets)
            lines.append(f"not available in this session: {missing} (edit to type again)")
        return "\n".join(lines) or "no token"


class TargetsView(QWidget):
    sigTargetsChanged = Signal(list)  # list[StoredTarget], after every load, save or removal

    def __init__(
        self,
        store: TargetStore,
        host: ProbeHost,
        tasks: TaskOwner,
        settings: QSettings | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.host = host
        self.tasks = tasks
        self._settings = settings
        self.dialog: TargetDialog | None = None  # the open add/edit dialog
        self.confirm: QMessageBox | None = None  # the open "remove?" question
        # Parented: the table must never outlive its model (a dangling model crashes Qt).
        self.table_model = TargetsTableModel(store.tokens.where(), self)
        self.table = row_table(self.table_model, WIDTHS)
        self.table.doubleClicked.connect(lambda _index: self.edit_target())
        self.add_button = QPushButton("Add…")
        self.edit_button = QPushButton("Edit…")
        self.remove_button = QPushButton("Remove")
        self.probe_button = QPushButton("Probe now")
        for button, (text, keys, method) in zip(
            (self.add_button, self.edit_button, self.remove_button, self.probe_button),
            ACTIONS,
            strict=True,
        ):
            button.setToolTip(f"{text.replace('&', '')} ({keys})")
            button.clicked.connect(getattr(self, method))
        self.interval_spin = QDoubleSpinBox()
        self.interval_spin.setRange(1.0, 3600.0)
        self.interval_spin.setDecimals(0)
        self.interval_spin.setSuffix(" s")
        self.interval_spin.setToolTip("How often every target is probed (live, ready, model)")
        self.interval_spin.setValue(self.saved_interval(settings))
        self.interval_spin.editingFinished.connect(self._interval_changed)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        bar = QHBoxLayout()
        for button in (self.add_button, self.edit_button, self.remove_button, self.probe_button):
            bar.addWidget(button)
        bar.addStretch(1)
        bar.addWidget(QLabel("Probe every"))
        bar.addWidget(self.interval_spin)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        host.sigSnapshots.connect(self.table_model.update_snapshots)
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._enable())
        self._enable()

    @staticmethod
    def saved_interval(settings: QSettings | None) -> float:
        value = settings.value(INTERVAL_KEY) if settings is not None else None
        try:
            seconds = float(value) if value is not None else DEFAULT_INTERVAL_S
        except (TypeError, ValueError):
            seconds = DEFAULT_INTERVAL_S
        return min(max(seconds, 1.0), 3600.0)

    def _enable(self) -> None:
        chosen = self.selected() is not None
        for button in (self.edit_button, self.remove_button, self.probe_button):
            button.setEnabled(chosen)

    def selected(self) -> StoredTarget | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.target(rows[0].row()) if rows else None

    def select(self, name: str) -> None:
        row = self.table_model.row_of(name)
        if row >= 0:
            self.table.selectRow(row)

    def say(self, text: str) -> None:
        self.message.setText(text)

    # -- loading ------------------------------------------------------------------------------

    async def load(self, *, start_probes: bool = True) -> list[StoredTarget]:
        """Read the stored targets, show them, and start probing them."""
        try:
            targets = await self.store.list_all()
        except TargetError as exc:
            self.say(str(exc))
            return []
        self.table_model.set_targets(targets)
        if start_probes:
            await self.host.start_all(targets)
        self._enable()
        self.sigTargetsChanged.emit(targets)
        return targets

    async def _reload(self, select: str | None = None) -> None:
        targets = await self.store.list_all()
        self.table_model.set_targets(targets)
        for name, prober in self.host.probers.items():
            self.table_model.snaps[name] = prober.snapshot()
        if select is not None:
            self.select(select)
        self._enable()
        self.sigTargetsChanged.emit(targets)

    # -- actions ------------------------------------------------------------------------------

    def add_target(self) -> None:
        self._open_dialog(None)

    def edit_target(self) -> None:
        found = self.selected()
        if found is None:
            self.say("Choose a target to edit")
            return
        self._open_dialog(found)

    def _open_dialog(self, existing: StoredTarget | None) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.raise_()
            return
        dialog = TargetDialog(self.store.tokens.where(), existing, self)
        dialog.sigSubmitted.connect(
            lambda target, token: self.tasks.spawn(self._save(dialog, target, token), "target-save")
        )
        self.dialog = dialog
        dialog.open()  # never exec(): it would re-enter the qasync loop

    async def save(self, target: Target, token: Any = None, *, new: bool = True) -> StoredTarget:
        """Store a target (`TargetError` if the store refuses), probe it, list it."""
        if new:
            stored = await self.store.add(target, token=token)
        else:
            stored = await self.store.update(target, token=token)
        await self.host.set_target(stored)  # probes with the new settings from now on
        await self._reload(select=target.name)
        verb = "added" if new else "saved"
        self.say(f"{target.name} {verb}; probing every {self.host.interval_s:g} s")
        return stored

    async def _save(self, dialog: TargetDialog, target: Target, token: Any) -> None:
        try:
            await self.save(target, token, new=dialog.existing is None)
        except TargetError as exc:
            dialog.show_error(str(exc).removeprefix("invalid target: "), ["name"])
            return
        dialog.accept()

    def remove_target(self) -> None:
        found = self.selected()
        if found is None:
            self.say("Choose a target to remove")
            return
        self.tasks.spawn(self._remove(found.target.name), "target-remove")

    async def _remove(self, name: str) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Remove target",
            f"Remove {name}? Its settings, secrets and probe history are forgotten.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def answered(_result: int) -> None:
            if not answer.done():
                answer.set_result(_clicked(box))

        box.finished.connect(answered)
        self.confirm = box
        box.open()  # never exec(): it would re-enter the qasync loop
        if await answer != int(QMessageBox.StandardButton.Yes):
            return
        await self.host.remove(name)
        await self.store.remove(name)
        await self._reload()
        self.say(f"{name} removed")

    def probe_target(self) -> None:
        found = self.selected()
        if found is None:
            self.say("Choose a target to probe")
            return
        self.tasks.spawn(self._probe(found.target.name), "target-probe")

    async def _probe(self, name: str) -> None:
        done = await self.host.probe_now(name)
        if done is not None:
            self.say(f"{name}: {done.state} ({done.detail})")

    def _interval_changed(self) -> None:
        seconds = float(self.interval_spin.value())
        if seconds == self.host.interval_s:
            return
        if self._settings is not None:
            self._settings.setValue(INTERVAL_KEY, seconds)
        self.tasks.spawn(self.host.set_interval(seconds), "probe-interval")
        self.say(f"Probing every {seconds:g} s")


def _clicked(box: QMessageBox) -> int:
    button = box.clickedButton()
    return int(box.standardButton(button)) if button is not None else 0


@dataclass
class TargetsWiring:
    """What `attach_targets` put into the window; `aclose()` before the database closes."""

    view: TargetsView
    host: ProbeHost
    notifier: Notifier
    timeline: StatusTimeline
    remote: RemotePredict

    async def aclose(self) -> None:
        await self.remote.aclose()
        await self.host.aclose()
        self.notifier.close()


async def attach_targets(
    window: MainWindow,
    db: Database,
    tasks: TaskOwner,
    run: RunRecorder | None = None,
    tokens: TokenStore | None = None,
) -> TargetsWiring:
    """Add the Targets view, the Monitor's status timeline and the Predict view's remote
    choice to the window, and start probing every stored target."""
    from gui.main_window import settings

    tokens = tokens if tokens is not None else TokenStore()
    store = TargetStore(db, tokens)
    notifier = Notifier(window)
    prefs = settings()
    host = ProbeHost(
        db, tokens, interval_s=TargetsView.saved_interval(prefs), notify=notifier.notify
    )
    view = TargetsView(store, host, tasks, prefs)
    timeline = StatusTimeline()
    remote = RemotePredict(window.predict_view, db, tokens, tasks, run)
    window.add_targets_view(view, [(text, keys, getattr(view, m)) for text, keys, m in ACTIONS])
    window.monitor_view.add_panel(timeline)
    host.sigSnapshots.connect(timeline.add_rounds)
    host.sigRemoved.connect(timeline.remove)
    view.sigTargetsChanged.connect(remote.set_targets)
    if window.theme is not None:
        window.theme.sigThemeChanged.connect(timeline.set_dark)
        timeline.set_dark(window.theme.dark)
    for stored in await view.load():
        name = stored.target.name
        timeline.set_stored(name, await host.stored_history(name))
    return TargetsWiring(view, host, notifier, timeline, remote)
