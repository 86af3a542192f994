"""The app's health probes: one `Prober` per stored target on the qasync loop, and what they say.

Probers run in the background from app start (and from when a target is added), are replaced
when a target is edited or the interval changes (a prober reads its settings and token once),
and stop when the target is removed or the window closes. The GUI hears from them two ways:

- a state change (`sigStateChanged`) at once, with a desktop notification (`Notifier`): changes
  are rare, and a person wants to know now;
- every probe round through a throttle: a timer looks at each prober's round count at most
  `max_hz` times a second and emits the snapshots of those that moved (`sigSnapshots`), so the
  table and the timeline repaint a few times a second however many targets are probed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QMainWindow, QStyle, QSystemTrayIcon

from engine.remote.prober import Prober, ProbeRound, ProberSnapshot, load_history, plain_error
from engine.remote.secrets import TokenStore
from engine.remote.target_store import StoredTarget
from engine.remote.targets import Target
from storage import Database
from storage.queries import ProbeRow

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0
NotifyFn = Callable[[str, str], None]  # title, text


class Notifier:
    """A tray notification, or a status-bar message; `ProbeHost` calls it on a state change."""

    def __init__(self, window: QMainWindow, *, use_tray: bool | None = None) -> None:
        self.window = window
        self.sent: list[str] = []  # every text shown, for the curious (and the tests)
        self.tray: QSystemTrayIcon | None = None
        if use_tray is None:
            use_tray = QSystemTrayIcon.isSystemTrayAvailable()
        if use_tray:
            icon = window.style().standardIcon(QStyle.StandardPixmap.SP_ComputerIcon)
            self.tray = QSystemTrayIcon(icon, window)
            self.tray.setToolTip("InferDeck")
            self.tray.show()

    def notify(self, title: str, text: str) -> None:
        self.sent.append(f"{title}: {text}")
        if self.tray is not None and self.tray.isVisible():
            self.tray.showMessage(title, text, QSystemTrayIcon.MessageIcon.Information, 8000)
        # The status bar says it too: a tray message is easy to miss and gone in seconds.
        self.window.statusBar().showMessage(f"{title}: {text}", 15000)

    def close(self) -> None:
        if self.tray is not None:
            self.tray.hide()


def change_notice(name: str, old: str, new: str, detail: str) -> tuple[str, str] | None:
    """The notification for a state change, or None for a target simply found up at start."""
    if old == "unknown" and new == "up":
        return None
    # `detail` is the probes' own terms ("live: connect_refused"); people read the words.
    _kind, _, error = detail.partition(": ")
    reason = plain_error(error) if error else detail
    text = f"{name} is {new}" + ("" if new == "up" else f": {reason}")
    return f"Target {new}", (text if old == "unknown" else f"{text}, was {old}")


class ProbeHost(QObject):
    """Every stored target's prober and their throttled snapshots; `attach_targets` builds it."""

    sigSnapshots = Signal(dict)  # target name -> ProberSnapshot, for targets with new rounds
    sigStateChanged = Signal(str, str, str, str)  # name, old state, new state, detail
    sigRemoved = Signal(str)

    def __init__(
        self,
        db: Database | None,
        tokens: TokenStore,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_hz: float = 2.0,
        notify: NotifyFn | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.db = db
        self.tokens = tokens
        self.interval_s = interval_s
        self.notify = notify
        self.probers: dict[str, Prober] = {}
        self._seen: dict[str, int] = {}  # rounds already emitted, per target
        self._closed = False  # `aclose` began: no prober starts after it
        self.emits = 0
        self._timer = QTimer(self)
        self._timer.setInterval(max(int(1000 / max_hz), 1))
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    # -- the probers ------------------------------------------------------------------------

    async def start_all(self, targets: list[StoredTarget]) -> None:
        for stored in targets:
            await self.set_target(stored)

    async def set_target(self, stored: StoredTarget) -> None:
        """Probe this target from now on, replacing its prober if it had one."""
        name = stored.target.name
        # The old prober stays listed while it stops, and the new one replaces it with no await
        # in between: the views never find a stored target without a prober. A prober another
        # call started meanwhile is stopped too, so none is left running unlisted.
        old = self.probers.get(name)
        while old is not None:
            await old.aclose()
            now = self.probers.get(name)
            old = None if now is old else now
        self._start_prober(name, stored.target)

    async def remove(self, name: str) -> None:
        await self._drop(name)
        self.sigRemoved.emit(name)

    async def set_interval(self, interval_s: float) -> None:
        """Restart every prober on the new schedule."""
        if interval_s <= 0:
            raise ValueError("the probe interval must be positive")
        self.interval_s = interval_s
        for name in list(self.probers):
            old = self.probers.get(name)
            if old is None:
                continue  # removed while an earlier prober stopped
            # Stopped, then replaced under the same name without an await in between: the
            # views (and their snapshots) never find a target missing its prober.
            await old.aclose()
            if self.probers.get(name) is not old:
                continue  # removed or replaced while it stopped
            # The state and its "since" carry over: only the schedule changed, not the target.
            self._start_prober(name, old.target, resume=old.snapshot())

    async def probe_now(self, name: str) -> ProbeRound | None:
        """One extra round now, beside the schedule."""
        prober = self.probers.get(name)
        if prober is None:
            return None
        done = await prober.probe_once()
        self._tick()
        return done

    def _start_prober(
        self, name: str, target: Target, resume: ProberSnapshot | None = None
    ) -> None:
        """Probe `target` under `name` on the current schedule (any old prober is stopped),
        going on from `resume` (the old prober's snapshot) when given."""
        if self._closed:
            # A save or a new interval that finished after `aclose` began: a prober started
            # now would run on, its client open, on a loop that is closing.
            return
        prober = Prober(
            target,
            interval_s=self.interval_s,
            db=self.db,
            tokens=self.tokens,
            on_change=self._on_change,
            resume=resume,
        )
        self.probers[name] = prober
        self._seen[name] = 0
        prober.start()

    async def _drop(self, name: str) -> None:
        prober = self.probers.pop(name, None)
        self._seen.pop(name, None)
        if prober is not None:
            await prober.aclose()

    async def aclose(self) -> None:
        """Stop every prober (before the database closes: their last rows go to its writer)."""
        self._closed = True
        self._timer.stop()
        for name in list(self.probers):
            await self._drop(name)

    # -- what the views see -------------------------------------------------------------------

    def snapshot(self, name: str) -> ProberSnapshot | None:
        prober = self.probers.get(name)
        return None if prober is None else prober.snapshot()

    async def stored_history(self, name: str, limit: int = 1000) -> list[ProbeRow]:
        """Probes stored earlier (other sessions, `inferdeck probe`), oldest first."""
        if self.db is None:
            return []
        return await load_history(self.db, name, limit)

    def _on_change(self, name: str, old: str, new: str, detail: str) -> None:
        # Called by the prober on the loop, which qasync runs on the GUI thread.
        self.sigStateChanged.emit(name, old, new, detail)
        notice = change_notice(name, old, new, detail)
        if notice is not None and self.notify is not None:
            self.notify(*notice)

    def _tick(self) -> None:
        moved: dict[str, ProberSnapshot] = {}
        for name, prober in self.probers.items():
            snap = prober.snapshot()
            if snap.rounds != self._seen.get(name):
                self._seen[name] = snap.rounds
                moved[name] = snap
        if moved:
            self.emits += 1
            self.sigSnapshots.emit(moved)
