"""Regression guard for the PySide6 6.12.0 bug on Python 3.11 (see PLATFORM.md).

There, every `Signal.emit()` drops one reference to `True`, and after a few hundred emits the
interpreter aborts in `bool_dealloc`. qasync's `call_soon_threadsafe` emits a signal, so an app
that finishes a few hundred worker jobs would die. The pin in pyproject.toml keeps 6.12.0 out;
this test fails loudly if a broken build comes back.
"""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot
from pytestqt.qtbot import QtBot

EMITS_PER_THREAD = 5_000
THREADS = 4


class _Relay(QObject):
    sigItem = Signal(object, tuple)

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.sigItem.connect(self._on_item)

    @Slot(object, tuple)
    def _on_item(self, _value: object, _extra: tuple[object, ...]) -> None:
        self.received += 1


def test_cross_thread_emits_keep_the_refcount_of_true(qtbot: QtBot) -> None:
    relay = _Relay()
    total = EMITS_PER_THREAD * THREADS
    before = sys.getrefcount(True)

    def emit_many() -> None:
        for i in range(EMITS_PER_THREAD):
            relay.sigItem.emit(i, (True, i))

    workers = [threading.Thread(target=emit_many) for _ in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # Emits from other threads are queued; deliver them all on this (the GUI) thread.
    qtbot.waitUntil(lambda: relay.received == total, timeout=30_000)
    QCoreApplication.processEvents()
    assert relay.received == total
    # References to True come and go with whatever else the process holds (other tests' objects
    # among them); the bug loses one per emit (20,000 here), so this tolerance cannot hide it.
    drift = sys.getrefcount(True) - before
    assert abs(drift) < total // 10, f"refcount of True moved by {drift} over {total} emits"
