"""End to end: the real app window (offscreen), a real file dropped on it, rows in SQLite; and
the Files panel with its runner over a real engine: Resume, totals across a resume, the row
estimate, asking before a finished file runs again, bad rows that open, start/end signals."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import qasync
from conftest import run_on_qasync
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.file_job import RowProblem, estimate_rows
from engine.models import ModelRegistry
from engine.pipeline import Engine
from engine.tasks import TaskOwner
from gui.app import run_app
from gui.main_window import MainWindow
from gui.predict.drop_panel import DropPanel
from gui.predict.drop_runner import DropRunner
from gui.shared.loop_lag import LoopLagMonitor
from storage import open_database
from storage.database import Database

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
        seen["hidden_table_files_rows"] = sum(
            1 for i in range(table.rowCount()) if table.row(i)["client_id"] == "files"
        )
        # Shown, the Requests table reads what came meanwhile: the newest rows on top.
        window.tabs.setCurrentWidget(window.requests_view)
        for _ in range(400):
            if not table.loading and table.count == 5001 and table.rowCount():
                break
            await asyncio.sleep(0.05)
        seen["table_count"] = table.count
        seen["table_top"] = [table.row(i)["client_id"] for i in range(min(50, table.rowCount()))]
        window.tabs.setCurrentWidget(window.monitor_view)
        monitor = window.monitor_view
        seen["plotted_latencies"] = monitor.recent_ms.count
        # A plot scrolled out of sight (the Files area takes height) is not redrawn: bring the
        # throughput plot on screen, and it draws what came meanwhile in its turn.
        monitor._scroll.ensureWidgetVisible(monitor.rate_plot.getViewWidget())
        seen["peak_throughput"] = 0.0
        for _ in range(200):
            _, throughput = monitor.curves["throughput"].getData()
            if throughput is not None and len(throughput) and throughput.max() > 0:
                seen["peak_throughput"] = float(throughput.max())
                break
            await asyncio.sleep(0.05)
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
    # The hidden table took none of the rows as they came (thousands a second, for nobody);
    # once shown it had all of them, the bad one included, the newest on top.
    assert seen["hidden_table_files_rows"] == 0
    assert seen["table_count"] == 5001
    assert seen["table_top"] == ["files"] * 50
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
        configs = dict(conn.execute("SELECT kind, config FROM runs").fetchall())
    assert counts == {"ok": 5000, "rejected": 1}
    files_summary = json.loads(runs["files"])
    assert files_summary["ok"] == 5000
    assert set(files_summary["ui_loop_lag_ms"]) == {"p50", "p99", "max"}
    # The run keeps what it was: its file, as whom it ran, and the model it ran on.
    assert json.loads(configs["files"]) == {
        "files": [str(src)],
        "client_id": "files",
        "models": ["iris"],
    }


# -- the Files panel and its runner over a real engine and database ------------------------------

Scenario = Callable[[DropRunner, DropPanel, Database, TaskOwner], Awaitable[None]]


def _run_panel(qapp: QApplication, qtbot: QtBot, path: Path, scenario: Scenario) -> None:
    """A real engine on a real SQLite file, the drop panel and its runner, on a qasync loop."""

    async def main() -> None:
        executor = ThreadPoolExecutor(2)
        db = await open_database(path)
        tasks = TaskOwner()
        engine = Engine(db, ModelRegistry.discover(), executor)
        await engine.start()
        lag = LoopLagMonitor()
        try:
            panel = DropPanel()
            qtbot.addWidget(panel)
            panel.show()
            runner = DropRunner(engine, panel, lag, say=lambda _text: None)
            await scenario(runner, panel, db, tasks)
        finally:
            await tasks.wait()
            await engine.stop()
            await db.close()
            executor.shutdown(wait=True)

    run_on_qasync(qapp, main())


def _jsonl(path: Path, good: int, bad_at: tuple[int, ...] = ()) -> Path:
    """`good` good rows, with a rejected row after each row number in `bad_at`."""
    lines = []
    for i in range(1, good + 1):
        lines.append(json.dumps(ROW))
        if i in bad_at:
            lines.append('{"sepal_length": "oops"}')
    path.write_text("\n".join(lines) + "\n")
    return path


def _job_rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT job_id, status, rows_done, rows_total FROM file_jobs"
        ).fetchall()


def test_the_estimate_of_a_csv_does_not_count_its_header(tmp_path: Path) -> None:
    csv_file = tmp_path / "ten.csv"
    csv_file.write_text(",".join(ROW) + "\n" + "".join("6.1,2.8,4.7,1.2\n" for _ in range(10)))
    no_newline = tmp_path / "ten-no-newline.csv"
    no_newline.write_text(csv_file.read_text().rstrip("\n"))
    jsonl = _jsonl(tmp_path / "ten.jsonl", 10)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join(ROW) + "\n")
    assert estimate_rows(csv_file) == 10
    assert estimate_rows(no_newline) == 10
    assert estimate_rows(jsonl) == 10  # JSONL has no header: every line is a row
    assert estimate_rows(header_only) == 0


def test_a_job_says_when_it_starts_and_ends_and_counts_rows_about_honestly(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    src = tmp_path / "ten.csv"
    src.write_text(",".join(ROW) + "\n" + "".join("6.1,2.8,4.7,1.2\n" for _ in range(10)))
    seen: dict[str, object] = {}

    async def scenario(
        runner: DropRunner, panel: DropPanel, db: Database, tasks: TaskOwner
    ) -> None:
        active: list[bool] = []
        panel.sigActive.connect(active.append)
        seen["before"] = panel.job_running
        texts: list[str] = []
        panel.status.setText("")
        runner.start([src], tasks)
        seen["during"] = panel.job_running
        seen["first"] = list(active)
        while runner.busy:
            texts.append(panel.status.text())
            await asyncio.sleep(0.005)
        seen["texts"] = texts
        seen["active"] = active
        seen["after"] = panel.job_running
        seen["status"] = panel.status.text()

    _run_panel(qapp, qtbot, tmp_path / "app.db", scenario)
    assert seen["before"] is False and seen["during"] is True and seen["after"] is False
    assert seen["first"] == [True] and seen["active"] == [True, False]
    # The header is no row: never "of ~11" (nor "~" at all: an estimate says "about").
    for text in seen["texts"]:  # type: ignore[attr-defined]
        assert "11" not in text and "~" not in text, text
    assert seen["status"] == "ten.csv: 10 ok, 0 rejected, 0 failed"


def test_resume_goes_on_with_a_stopped_job_and_totals_add_up_across_the_resume(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    total_good = 30_000
    # One bad row early (it stops the job, below) and two in the part that runs after Resume.
    src = _jsonl(tmp_path / "big.jsonl", total_good, bad_at=(3, 29_000, 29_990))
    db_path = tmp_path / "app.db"
    seen: dict[str, object] = {}

    async def scenario(
        runner: DropRunner, panel: DropPanel, db: Database, tasks: TaskOwner
    ) -> None:
        seen["resume_at_start"] = panel.resume_button.isVisible()
        offered: list[bool] = []
        panel.sigResumeOffered.connect(offered.append)
        add_problem = panel.add_problem

        def stop_at_first_problem(path: Path, problem: RowProblem) -> None:
            # Stops the job at a known place, however fast the machine reads the file.
            add_problem(path, problem)
            runner.cancel()

        panel.add_problem = stop_at_first_problem  # type: ignore[method-assign]
        runner.start([src], tasks)
        await wait_for(lambda: not runner.busy, 60)
        panel.add_problem = add_problem  # type: ignore[method-assign]
        seen["stopped_status"] = panel.status.text()
        seen["resume_visible"] = panel.resume_button.isVisible()
        seen["resume_paths"] = list(panel.resume_paths)
        seen["jobs_after_stop"] = _job_rows(db_path)
        # A new window's panel (the app started again) offers the stored job too.
        fresh = DropPanel()
        qtbot.addWidget(fresh)
        await DropRunner(runner.engine, fresh, runner.lag, say=lambda _t: None).offer_stored(tasks)
        seen["offered_at_start"] = (list(fresh.resume_paths), fresh.status.text())
        active: list[bool] = []
        panel.sigActive.connect(active.append)
        panel.resume_button.click()
        seen["resume_hidden_during"] = panel.resume_button.isHidden()
        await wait_for(lambda: not runner.busy, 120)
        seen["active"] = active
        seen["offered"] = offered
        seen["final_status"] = panel.status.text()
        seen["resume_after"] = panel.resume_button.isVisible()
        seen["problems"] = [panel.problems.item(i).text() for i in range(panel.problems.count())]

    _run_panel(qapp, qtbot, db_path, scenario)
    assert seen["resume_at_start"] is False
    assert "cancelled: Resume goes on from here" in str(seen["stopped_status"])
    assert seen["resume_visible"] is True and seen["resume_paths"] == [src]
    jobs_after_stop = cast(list[tuple[int, str, int, int]], seen["jobs_after_stop"])
    ((job_id, status, done_before, _total),) = jobs_after_stop
    assert status == "cancelled" and 0 < done_before < total_good + 3
    paths, text = cast(tuple[list[Path], str], seen["offered_at_start"])
    assert paths == [src] and text == (
        f"big.jsonl was cancelled after {done_before:,} rows: Resume goes on from there"
    )
    assert seen["resume_hidden_during"] is True and seen["active"] == [True, False]
    assert seen["offered"] == [True, False]
    # The same job went on (no second job), and the summary counts every row of the file.
    assert _job_rows(db_path) == [(job_id, "done", total_good + 3, total_good + 3)]
    final = str(seen["final_status"])
    now = total_good + 3 - done_before
    assert final == (
        f"big.jsonl: {total_good:,} ok, 3 rejected, 0 failed in all "
        f"({done_before:,} rows done before the resume, {now:,} now)"
    ), final
    assert seen["resume_after"] is False
    # The rows listed after the resume are the resumed part's own bad rows.
    assert [p.split(":")[1] for p in seen["problems"]] == [  # type: ignore[attr-defined]
        " line 29002 field 'sepal_length'",
        " line 29993 field 'sepal_length'",
    ]


def test_a_finished_file_asks_before_running_again(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    src = _jsonl(tmp_path / "done.jsonl", 5)
    db_path = tmp_path / "app.db"
    seen: dict[str, object] = {}

    async def question(panel: DropPanel) -> QMessageBox:
        await wait_for(lambda: panel.findChild(QMessageBox) is not None, 30)
        box = panel.findChild(QMessageBox)
        assert isinstance(box, QMessageBox)
        return box

    async def scenario(
        runner: DropRunner, panel: DropPanel, db: Database, tasks: TaskOwner
    ) -> None:
        runner.start([src], tasks)
        await wait_for(lambda: not runner.busy, 60)
        seen["first_asked"] = panel.findChild(QMessageBox) is not None
        # Again: it asks, and No runs nothing.
        runner.start([src], tasks)
        box = await question(panel)
        seen["text"] = box.text()
        seen["modal_open"] = box.isVisible()
        seen["running_while_asked"] = panel.job_running
        no = box.button(QMessageBox.StandardButton.No)
        assert no is not None
        no.click()
        await wait_for(lambda: not runner.busy, 30)
        seen["after_no"] = panel.status.text()
        seen["jobs_after_no"] = len(_job_rows(db_path))
        await wait_for(lambda: panel.findChild(QMessageBox) is None, 10)
        # And Yes runs it again, as a new job.
        runner.start([src], tasks)
        box = await question(panel)
        yes = box.button(QMessageBox.StandardButton.Yes)
        assert yes is not None
        yes.click()
        await wait_for(lambda: not runner.busy, 60)
        seen["after_yes"] = panel.status.text()
        seen["jobs_after_yes"] = [row[1] for row in _job_rows(db_path)]

    _run_panel(qapp, qtbot, db_path, scenario)
    assert seen["first_asked"] is False
    assert seen["text"] == "done.jsonl already ran to the end. Run it again?"
    assert seen["modal_open"] is True and seen["running_while_asked"] is True
    assert seen["after_no"] == "Not run again: done.jsonl" and seen["jobs_after_no"] == 1
    assert seen["after_yes"] == "done.jsonl: 5 ok, 0 rejected, 0 failed"
    assert seen["jobs_after_yes"] == ["done", "done"]


def test_double_clicking_a_bad_row_opens_its_stored_request_and_shows_it_in_full(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(",".join(ROW) + "\n6.1,2.8,4.7,1.2\n6.1,wide,4.7,1.2\n")
    db_path = tmp_path / "app.db"
    seen: dict[str, object] = {}

    async def scenario(
        runner: DropRunner, panel: DropPanel, db: Database, tasks: TaskOwner
    ) -> None:
        opened: list[str] = []
        panel.sigOpenRequest.connect(opened.append)
        runner.start([src], tasks)
        await wait_for(lambda: not runner.busy, 60)
        item = panel.problems.item(0)
        seen["listed"] = item.text()
        rect = panel.problems.visualItemRect(item)
        # As a person does it: the press of the first click, then the double-click.
        viewport = panel.problems.viewport()
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())  # type: ignore[no-untyped-call]
        qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=rect.center())  # type: ignore[no-untyped-call]
        seen["opened"] = opened
        seen["detail"] = panel.problem_detail.text()
        seen["detail_shown"] = panel.problem_detail.isVisible()

    _run_panel(qapp, qtbot, db_path, scenario)
    assert str(seen["listed"]).startswith("bad.csv: row 2 (line 3) field 'sepal_width'")
    with sqlite3.connect(db_path) as conn:
        ((request_id, status, row),) = conn.execute(
            "SELECT request_id, status, source_row FROM requests WHERE status = 'rejected'"
        ).fetchall()
    assert (status, row) == ("rejected", 2)
    assert seen["opened"] == [request_id]
    detail = str(seen["detail"])
    assert seen["detail_shown"] is True
    assert detail.splitlines() == [
        f"{src} · row 2 (line 3) · field sepal_width",
        "Input should be a valid number, unable to parse string as a number",
        f"request {request_id}: double-click the row to open its trace",
    ]
