"""The Targets view: the stored remote targets, their health now, and add / edit / remove.

The table (`targets_table_model`) shows each target's settings, never a secret, beside its
prober's state, coloured, the last probe's latency and when the state last changed.

Adding or editing opens `TargetDialog` with `open()`; what it submits is saved through
`TargetStore`, and the target's prober is (re)started with the new settings; a refusal from
the store (a name taken) goes back into the still-open dialog. Removing asks first (a message
box opened with `open()` and awaited through a future), then stops the prober and forgets the
target, its secrets and its probe history. The probe interval is a spin box, kept in QSettings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.remote.secrets import TokenStore
from engine.remote.target_store import StoredTarget, TargetError, TargetStore
from engine.remote.targets import Target
from engine.stats import RunRecorder
from engine.tasks import TaskOwner
from gui.predict.remote_predict import RemotePredict
from gui.shared.fields import number_box
from gui.shared.tables import row_table
from gui.targets.probe_host import DEFAULT_INTERVAL_S, Notifier, ProbeHost
from gui.targets.status_timeline import StatusTimeline
from gui.targets.target_dialog import TargetDialog
from gui.targets.targets_table_model import TargetsTableModel
from storage import Database

if TYPE_CHECKING:
    from gui.main_window import MainWindow

WIDTHS = (140, 240, 80, 100, 80, 260, 80, 120)  # px, one a column of `TargetsTableModel`
INTERVAL_KEY = "targets/interval_s"

# (text, shortcut, TargetsView method): the menu bar shows these (gui.main_window).
ACTIONS = (
    ("&Add target…", "Ctrl+Shift+A", "add_target"),
    ("&Edit target…", "Ctrl+Shift+E", "edit_target"),
    ("&Remove target", "Ctrl+Shift+D", "remove_target"),
    ("&Probe now", "Ctrl+Shift+P", "probe_target"),
)


class TargetsView(QWidget):
    """The Targets tab: its table and actions; `attach_targets` builds it, the menu calls it."""

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
        self.interval_spin = number_box(
            1.0,
            3600.0,
            self.saved_interval(settings),
            decimals=0,
            suffix=" s",
            tooltip="How often every target is probed (live, ready, model)",
        )
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
        found = self._chosen("edit")
        if found is not None:
            self._open_dialog(found)

    def _chosen(self, verb: str) -> StoredTarget | None:
        """The selected target, or None once the user is told to choose one."""
        found = self.selected()
        if found is None:
            self.say(f"Choose a target to {verb}")
        return found

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
        found = self._chosen("remove")
        if found is not None:
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
        found = self._chosen("probe")
        if found is not None:
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
    targets: list[StoredTarget] = field(default_factory=list)  # as `list_targets` read them

    async def list_targets(self) -> list[StoredTarget]:
        """Read the stored targets and show them (the table, and whoever listens to
        `sigTargetsChanged`: the side pane, the Predict and Load choices), not probed yet."""
        self.targets = await self.view.load(start_probes=False)
        return self.targets

    async def start_probing(self) -> None:
        """Probe the listed targets, and draw each one's stored probes in the Monitor's
        timeline (the app does this after its first paint: a lane is two plots, and the
        probers' clients and first probes need not hold up the window)."""
        for stored in self.targets:
            name = stored.target.name
            if self.view.table_model.row_of(name) < 0:
                continue  # removed since it was listed
            if name not in self.host.probers:  # (one saved since is probed already)
                await self.host.set_target(stored)
            self.timeline.set_stored(name, await self.host.stored_history(name))

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
    *,
    start: bool = True,
) -> TargetsWiring:
    """Add the Targets view, the Monitor's status timeline and the Predict view's remote
    choice to the window; with `start`, list the stored targets and start probing them (else
    the caller does, with `list_targets` and `start_probing`)."""
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
    wiring = TargetsWiring(view, host, notifier, timeline, remote)
    if start:
        await wiring.list_targets()
        await wiring.start_probing()
    return wiring
