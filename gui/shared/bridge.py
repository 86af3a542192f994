"""The one gate from the engine to the GUI thread: plain-Python snapshots in, Qt signals out.

The engine publishes `StatsSnapshot`s (≤ 10 Hz) and per-request outcomes as plain objects. The
bridge keeps only the newest snapshot and the outcomes since the last tick, and a QTimer emits
them at most `max_hz` times a second: never one signal per request.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from engine.stats import StatsSnapshot
from engine.work import Work


class EngineBridge(QObject):
    """The engine's newest snapshot and finished requests, emitted per tick; `gui.app` wires it."""

    sigStats = Signal(object)  # StatsSnapshot
    sigFinished = Signal(list)  # list[Work] finished since the previous emit

    def __init__(self, max_hz: float = 30.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._latest: StatsSnapshot | None = None
        self._finished: list[Work] = []
        self.emits = 0
        self._timer = QTimer(self)
        self._timer.setInterval(max(int(1000 / max_hz), 1))
        self._timer.timeout.connect(self._flush)
        self._timer.start()

    # Called on the GUI thread by the engine's callbacks (the qasync loop runs there).
    def on_snapshot(self, snapshot: StatsSnapshot) -> None:
        self._latest = snapshot

    def on_finished(self, done: list[Work]) -> None:
        self._finished.extend(done)

    def _flush(self) -> None:
        if self._latest is not None:
            self.sigStats.emit(self._latest)
            self._latest = None
            self.emits += 1
        if self._finished:
            batch, self._finished = self._finished, []
            self.sigFinished.emit(batch)
            self.emits += 1

    def stop(self) -> None:
        self._timer.stop()
