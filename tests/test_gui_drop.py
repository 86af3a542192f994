"""End to end: the real app window (offscreen), a real file dropped on it, rows in SQLite."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import qasync
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from gui.app import _main
from gui.main_window import MainWindow

ROW = {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}


def _drop(window: MainWindow, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(50, 50),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)


def test_dropping_a_file_runs_it_and_stores_every_row(qapp: QApplication, tmp_path: Path) -> None:
    src = tmp_path / "drop.jsonl"
    lines = [json.dumps(ROW)] * 5000 + ['{"sepal_length": "oops"}']
    src.write_text("\n".join(lines) + "\n")
    db = tmp_path / "app.db"
    seen: dict[str, object] = {}

    async def drive(window: MainWindow) -> None:
        while "ready" not in window.model_state.text():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        _drop(window, [src])
        panel = window.drop_panel
        for _ in range(600):
            await asyncio.sleep(0.05)
            if not panel.cancel_button.isEnabled() and "ok" in panel.status.text():
                break
        seen["status"] = panel.status.text()
        seen["problems"] = [panel.problems.item(i).text() for i in range(panel.problems.count())]
        seen["progress"] = panel.progress.value()
        window.close()

    qasync.run(_main(db, 60, drive))
    assert "5,000 ok, 1 rejected" in str(seen["status"]), seen
    assert seen["problems"] == [
        "drop.jsonl: line 5001 field 'sepal_length': "
        "Input should be a valid number, unable to parse string as a number (+3 more in this row)"
    ]
    assert seen["progress"] == 1000
    with sqlite3.connect(db) as conn:
        counts = dict(
            conn.execute(
                "SELECT status, count(*) FROM requests WHERE client_id = 'files' GROUP BY status"
            ).fetchall()
        )
        runs = dict(conn.execute("SELECT kind, summary FROM runs").fetchall())
    assert counts == {"ok": 5000, "rejected": 1}
    files_summary = json.loads(runs["files"])
    assert files_summary["ok"] == 5000
    assert set(files_summary["ui_loop_lag_ms"]) == {"p50", "p99", "max"}
