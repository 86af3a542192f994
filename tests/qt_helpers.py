"""Helpers for the desktop tests: waiting on a condition, a stand-in view, a targets-view rig."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from conftest import run_on_qasync
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import QApplication, QLineEdit, QWidget
from pytestqt.qtbot import QtBot

from engine.remote.secrets import TokenStore
from engine.remote.target_store import TargetStore
from engine.tasks import TaskOwner
from gui.targets.probe_host import ProbeHost
from gui.targets.targets_view import TargetsView
from storage import Database, open_database

# A targets-view test: drives the view on a real database with a token store.
Scenario = Callable[[TargetsView, Database, TokenStore], Awaitable[None]]


async def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll `check` on the loop until it holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class StubView(QWidget):
    """Stands in for the database-backed views (their own tests drive them on a real file)."""

    sigOpen = Signal(dict)

    def __init__(self) -> None:
        super().__init__()
        self.text_edit = QLineEdit(self)


def drive(
    qapp: QApplication,
    qtbot: QtBot,
    path: Path,
    scenario: Scenario,
    settings: QSettings | None = None,
    interval_s: float = 30.0,
) -> None:
    async def main() -> None:
        db = await open_database(path)
        tokens = TokenStore(system_keyring=False)
        tasks = TaskOwner()
        host = ProbeHost(db, tokens, interval_s=interval_s)
        try:
            view = TargetsView(TargetStore(db, tokens), host, tasks, settings)
            qtbot.addWidget(view)
            view.show()
            await view.load()
            await scenario(view, db, tokens)
        finally:
            await tasks.wait()
            await host.aclose()
            await db.close()

    run_on_qasync(qapp, main())


def all_cells(view: TargetsView) -> str:
    model = view.table_model
    roles = (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole)
    return " ".join(
        str(model.data(model.index(r, c), role))
        for r in range(model.rowCount())
        for c in range(model.columnCount())
        for role in roles
    )
