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

from gui.app import run_app
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
        window.tabs.setCurrentWidget(window.monitor_view)  # plots redraw only when shown
        _drop(window, [src])
        panel = window.drop_panel
        for _ in range(600):
            await asyncio.sleep(0.05)
            if not panel.cancel_button.isEnabled() and "ok" in panel.status.text():
                break
        seen["status"] = panel.status.text()
        seen["problems"] = [panel.problems.item(i).text() for i in range(panel.problems.count())]
        seen["progress"] = panel.progress.value()
        await asyncio.sleep(0.3)  # the bridge's last tick and a redraw of every plot
        table = window.requests_view.table_model
        seen["table_files_rows"] = sum(
            1 for i in range(table.rowCount()) if table.row(i)["client_id"] == "files"
        )
        monitor = window.monitor_view
        seen["plotted_latencies"] = monitor.recent_ms.count
        _, throughput = monitor.curves["throughput"].getData()
        seen["peak_throughput"] = 0.0 if throughput is None else float(throughput.max())
        seen["plot_redraws"] = monitor.redraws
        window.tabs.setCurrentWidget(window.runs_view)
        window.runs_view.refresh()
        await asyncio.sleep(0.3)
        runs = window.runs_view.table_model
        seen["runs"] = [runs.run(i).kind for i in range(runs.rowCount())]
        window.close()

    qasync.run(run_app(db, 60, drive))
    assert "5,000 ok, 1 rejected" in str(seen["status"]), seen
    assert seen["problems"] == [
        "drop.jsonl: line 5001 field 'sepal_length': "
        "Input should be a valid number, unable to parse string as a number (+3 more in this row)"
    ]
    assert seen["progress"] == 1000
    assert seen["table_files_rows"] == 5001  # the live tail: every row, the bad one included
    assert seen["plotted_latencies"] == 5000  # each ok request fed the latency histogram
    assert float(seen["peak_throughput"]) > 0  # type: ignore[arg-type]
    assert int(seen["plot_redraws"]) >= 2  # type: ignore[call-overload]
    assert "files" in seen["runs"]  # type: ignore[operator]
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
