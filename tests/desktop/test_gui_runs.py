"""The Runs view against a real SQLite file: a real file job run through the real engine, a GUI
run that is still running, and exports in every format, driven on a qasync loop."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import run_on_qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)
from pytestqt.qtbot import QtBot

from engine.export import FORMATS
from engine.file_job import FileJob
from engine.ids import short_id
from engine.models import ModelRegistry
from engine.pipeline import Engine
from engine.runs import begin_run, end_run
from engine.tasks import TaskOwner
from gui.runs.runs_table_model import COLUMNS, RunsTableModel
from gui.runs.runs_view import RunsView
from gui.shared.when import MISSING
from storage import open_database

ROW = {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}
GOOD_ROWS = 20
LAG = {"p50": 0.5, "p99": 3.25, "max": 9.0}


@dataclass(frozen=True)
class Runs:
    """The database every test reads: three runs, oldest first."""

    path: Path
    source: Path
    empty_gui: str  # a GUI run that ended with no requests
    files: str  # a dropped-file run: 20 ok rows and 1 rejected, with its UI loop lag
    running: str  # a GUI run still running (its owner, this process, is alive)


async def _build(path: Path, source: Path) -> Runs:
    executor = ThreadPoolExecutor(2)
    try:
        db = await open_database(path)
        try:
            empty = await begin_run(db, "gui", {})
            await end_run(db, empty, extra={"ui_loop_lag_ms": {"p50": 0, "p99": 0, "max": 0}})
            engine = Engine(db, ModelRegistry.discover(), executor)
            await engine.start()
            try:
                config = {"files": [str(source)], "client_id": "files"}
                files = await begin_run(db, "files", config)
                report = await FileJob(engine, source, run=files, client_id="files").run()
                assert (report.ok, report.rejected) == (GOOD_ROWS, 1), report
                assert report.model == "iris"
                # As the drop runner does: the model, known once the job ran, joins the config.
                await end_run(
                    db, files, extra={"ui_loop_lag_ms": LAG}, config={"models": [report.model]}
                )
            finally:
                await engine.stop()
            running = await begin_run(db, "gui", {})
            await db.writer.flush()
        finally:
            await db.close()
    finally:
        executor.shutdown(wait=True)
    return Runs(path, source, empty.run_id, files.run_id, running.run_id)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    folder = tmp_path_factory.mktemp("runs")
    source = folder / "rows.jsonl"
    source.write_text("".join(json.dumps(ROW) + "\n" for _ in range(GOOD_ROWS)))
    with source.open("a") as fh:
        fh.write('{"sepal_length": 1}\n')
    return asyncio.run(_build(folder / "runs.db", source))


Scenario = Callable[[RunsView, TaskOwner], Awaitable[None]]


def _drive(qapp: QApplication, qtbot: QtBot, path: Path, scenario: Scenario) -> None:
    """Open the database on a qasync loop, build a view over it, run `scenario`, close all."""

    async def main() -> None:
        db = await open_database(path)
        tasks = TaskOwner()
        try:
            view = RunsView(db, tasks)
            qtbot.addWidget(view)
            await scenario(view, tasks)
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, main())


def _cells(model: RunsTableModel, row: int) -> dict[str, str]:
    return {name: model.data(model.index(row, i)) for i, name in enumerate(COLUMNS)}


def test_model_lists_runs_newest_first_with_their_numbers(
    qapp: QApplication, qtbot: QtBot, runs: Runs
) -> None:
    seen: dict[str, object] = {}
    rows: list[dict[str, str]] = []

    async def scenario(view: RunsView, tasks: TaskOwner) -> None:
        model = view.table_model
        await model.load()
        seen["ids"] = [model.run(i).run_id for i in range(model.rowCount())]
        rows.extend(_cells(model, i) for i in range(model.rowCount()))
        seen["summary"] = model.run(1).summary
        ok = model.index(1, COLUMNS.index("ok"))
        kind = model.index(1, COLUMNS.index("kind"))
        seen["align_ok"] = model.data(ok, Qt.ItemDataRole.TextAlignmentRole)
        seen["align_kind"] = model.data(kind, Qt.ItemDataRole.TextAlignmentRole)
        settings = model.index(1, COLUMNS.index("settings"))
        seen["settings_tip"] = model.data(settings, Qt.ItemDataRole.ToolTipRole)
        seen["clocks"] = [
            dt.datetime.fromtimestamp(model.run(i).started_us / 1e6).strftime("%H:%M")
            for i in range(model.rowCount())
        ]

    _drive(qapp, qtbot, runs.path, scenario)
    assert seen["ids"] == [runs.running, runs.files, runs.empty_gui]
    running, files, empty = rows
    assert running["status"] == "running" and running["kind"] == "gui"
    for column in ("ok", "rejected+failed", "throughput/s", "p50 ms", "p99 ms", "UI lag p99 ms"):
        assert running[column] == MISSING, column
    summary = seen["summary"]
    assert isinstance(summary, dict)
    assert files["kind"] == "files" and files["status"] == "done"
    assert files["ok"] == "20" and files["rejected+failed"] == "1"
    assert files["throughput/s"] == f"{summary['throughput_per_s']:,.1f}"
    assert files["p50 ms"] == f"{summary['latency_ms']['p50']:.2f}"
    assert files["p99 ms"] == f"{summary['latency_ms']['p99']:.2f}"
    assert files["UI lag p99 ms"] == "3.25"
    # Each run says what it was: a name (its file or kind, and its start time), its
    # settings, its status.
    clock = seen["clocks"]
    assert isinstance(clock, list)
    assert files["name"] == f"rows.jsonl · {clock[1]}"
    assert files["settings"] == "file rows.jsonl · model iris"
    assert seen["settings_tip"] == (
        f"target: local engine\nfile: {runs.source}\nmodel: iris\nclient: files"
    )
    assert running["name"] == f"app session · {clock[0]}" and running["status"] == "running"
    assert files["run"] == runs.files
    assert empty["ok"] == "0" and empty["rejected+failed"] == "0"
    assert empty["name"] == f"app session · {clock[2]}" and empty["status"] == "done"
    assert seen["align_ok"] == Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    assert seen["align_kind"] is None


def test_selecting_a_run_shows_its_summary_and_file_jobs(
    qapp: QApplication, qtbot: QtBot, runs: Runs
) -> None:
    seen: dict[str, object] = {}

    async def scenario(view: RunsView, tasks: TaskOwner) -> None:
        loaded: list[int] = []
        details: list[str] = []
        view.sigRunsLoaded.connect(loaded.append)
        view.sigDetailLoaded.connect(details.append)
        seen["export_before"] = view.export_button.isEnabled()
        view.refresh()
        await tasks.wait()
        seen["loaded"] = list(loaded)
        view.table.selectRow(1)
        await tasks.wait()
        seen["files_detail"] = view.detail.toPlainText()
        seen["export_after"] = view.export_button.isEnabled()
        view.table.selectRow(0)
        await tasks.wait()
        seen["running_detail"] = view.detail.toPlainText()
        # A refresh keeps the selected run selected and reads its detail again.
        view.refresh()
        await tasks.wait()
        seen["kept"] = view.selected_run()
        seen["details"] = list(details)

    _drive(qapp, qtbot, runs.path, scenario)
    assert seen["export_before"] is False and seen["export_after"] is True
    assert seen["loaded"] == [3]
    text = str(seen["files_detail"])
    assert f"run {runs.files}" in text and "kind files · status done" in text
    assert text.startswith("rows.jsonl · ")
    assert "settings: target local engine · file " + str(runs.source) + " · model iris" in text
    assert "requests: 20 ok, 1 rejected" in text
    assert "accepted 21 · ok 20 · rejected 1 · failed 0" in text
    assert "latency ms: p50 " in text and "p99.9 " in text
    assert "UI loop lag ms: p50 0.50  p99 3.25  max 9.00" in text
    assert str(runs.source) in text  # in the config and in the file job
    assert f"#1 {runs.source} [jsonl] done, 21/21 rows, model iris" in text
    running = str(seen["running_detail"])
    assert "status running" in running and "still running" in running
    assert "requests: none" in running and "file jobs" not in running
    kept = seen["kept"]
    assert kept is not None and getattr(kept, "run_id", None) == runs.running
    assert seen["details"] == [runs.files, runs.running, runs.running]


def test_deselecting_the_run_clears_its_summary(
    qapp: QApplication, qtbot: QtBot, runs: Runs
) -> None:
    seen: dict[str, object] = {}

    async def scenario(view: RunsView, tasks: TaskOwner) -> None:
        view.refresh()
        await tasks.wait()
        view.table.selectRow(1)
        await tasks.wait()
        seen["shown"] = view.detail.toPlainText()
        view.table.clearSelection()
        await tasks.wait()
        seen["cleared"] = view.detail.toPlainText()
        seen["export"] = view.export_button.isEnabled()
        # A read still under way when the run is let go of does not fill the pane afterwards.
        view.table.selectRow(1)
        view.table.clearSelection()
        await tasks.wait()
        seen["late"] = view.detail.toPlainText()
        # Selecting it again shows it again (the view forgot it was shown).
        view.table.selectRow(1)
        await tasks.wait()
        seen["again"] = view.detail.toPlainText()

    _drive(qapp, qtbot, runs.path, scenario)
    assert f"run {runs.files}" in str(seen["shown"])
    assert seen["cleared"] == "" and seen["export"] is False
    assert seen["late"] == ""
    assert f"run {runs.files}" in str(seen["again"])


def test_export_writes_each_format(
    qapp: QApplication, qtbot: QtBot, runs: Runs, tmp_path: Path
) -> None:
    counts: dict[str, int] = {}
    status: dict[str, str] = {}
    out = {fmt: tmp_path / f"run.{fmt}" for fmt in FORMATS}

    async def scenario(view: RunsView, tasks: TaskOwner) -> None:
        for fmt in FORMATS:
            counts[fmt] = await view.export_run(runs.files, fmt, out[fmt])
            status[fmt] = view.status.text()

    _drive(qapp, qtbot, runs.path, scenario)
    assert counts == dict.fromkeys(FORMATS, GOOD_ROWS + 1)
    assert f"Exported 21 requests of run {short_id(runs.files)} to {out['csv']}" == status["csv"]

    records = [json.loads(line) for line in out["jsonl"].read_text().splitlines()]
    assert len(records) == 21 and {r["run_id"] for r in records} == {runs.files}
    assert sorted(r["status"] for r in records).count("ok") == 20

    rows = list(csv.reader(io.StringIO(out["csv"].read_text())))
    assert rows[0][:3] == ["request_id", "run_id", "source"] and len(rows) == 1 + 21
    table = list(csv.DictReader(io.StringIO(out["csv"].read_text())))
    assert {r["label"] for r in table if r["status"] == "ok"} == {"virginica"}
    # Each request's input fields and scores, one column each, beside label/latency/status.
    ok = next(r for r in table if r["status"] == "ok")
    assert {k: float(ok[f"input.{k}"]) for k in ROW} == ROW
    assert float(ok["score.virginica"]) > float(ok["score.setosa"])

    trace = json.loads(out["chrome-trace"].read_text())
    requests = [e for e in trace["traceEvents"] if e.get("cat") == "request"]
    assert len(requests) == 21 and all(e["ts"] >= 0 for e in requests)
    assert not list(tmp_path.glob(".*.part"))


def test_export_button_asks_for_a_file_then_exports(
    qapp: QApplication, qtbot: QtBot, runs: Runs, tmp_path: Path
) -> None:
    target = tmp_path / "picked.csv"
    seen: dict[str, object] = {}

    async def scenario(view: RunsView, tasks: TaskOwner) -> None:
        view.refresh()
        await tasks.wait()
        view.table.selectRow(1)
        await tasks.wait()
        view.format_box.setCurrentText("csv")
        view.export_selected()
        dialog = view.findChild(QFileDialog)
        assert dialog is not None and dialog.isVisible()
        seen["suffix"] = dialog.defaultSuffix()
        dialog.selectFile(str(target))
        dialog.accept()
        await tasks.wait()
        seen["status"] = view.status.text()

    _drive(qapp, qtbot, runs.path, scenario)
    assert seen["suffix"] == "csv"
    assert "Exported 21 requests" in str(seen["status"])
    assert len(target.read_text().splitlines()) == 1 + 21


def test_export_to_an_unwritable_path_fails_in_one_line_and_leaves_no_file(
    qapp: QApplication, qtbot: QtBot, runs: Runs, tmp_path: Path
) -> None:
    missing_dir = tmp_path / "no such folder" / "run.jsonl"
    a_folder = tmp_path / "taken"
    a_folder.mkdir()
    results: dict[str, tuple[int, str]] = {}

    async def scenario(view: RunsView, tasks: TaskOwner) -> None:
        results["missing_dir"] = (
            await view.export_run(runs.files, "jsonl", missing_dir),
            view.status.text(),
        )
        # The rows are all written before the rename onto a folder fails: the part file goes.
        results["a_folder"] = (
            await view.export_run(runs.files, "chrome-trace", a_folder),
            view.status.text(),
        )
        results["unknown_run"] = (
            await view.export_run("ffffffff", "csv", tmp_path / "x.csv"),
            view.status.text(),
        )

    _drive(qapp, qtbot, runs.path, scenario)
    for name, (count, text) in results.items():
        assert count == -1, name
        assert "failed" in text and "\n" not in text and "Traceback" not in text, text
    assert "No such file or directory" in results["missing_dir"][1]
    assert "no run matches 'ffffffff'" in results["unknown_run"][1]
    assert not missing_dir.parent.exists()
    assert a_folder.is_dir() and not list(a_folder.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


RUNS_TAB_AT_1024 = (802, 600)  # the Runs tab's size in a 1024×700 window (side pane open)
KEY_COLUMNS = ("name", "status", "ok", "rejected+failed", "throughput/s", "p50 ms", "p99 ms")
NAME_MIN_PX = 150


def test_at_1024_the_key_columns_fit_without_scrolling(
    qapp: QApplication, qtbot: QtBot, runs: Runs
) -> None:
    """At 1024 px the name, status and figures are all in sight (they were scrolled out of it,
    behind the settings); the name column takes the width left and elides in the middle."""
    seen: dict[str, object] = {}

    async def scenario(view: RunsView, _tasks: TaskOwner) -> None:
        view.resize(*RUNS_TAB_AT_1024)
        view.show()
        await view.load()
        table, header = view.table, view.table.horizontalHeader()
        qtbot.waitUntil(lambda: table.viewport().width() < RUNS_TAB_AT_1024[0])
        width = table.viewport().width()
        seen["width"] = width
        seen["scrolled"] = table.horizontalScrollBar().value()
        seen["spans"] = {
            name: (
                header.sectionViewportPosition(COLUMNS.index(name)),
                header.sectionViewportPosition(COLUMNS.index(name))
                + header.sectionSize(COLUMNS.index(name)),
            )
            for name in KEY_COLUMNS
        }
        metrics = header.fontMetrics()
        seen["headers_fit"] = {
            name: metrics.horizontalAdvance(name) <= header.sectionSize(COLUMNS.index(name))
            for name in KEY_COLUMNS
        }
        seen["name_width"] = header.sectionSize(COLUMNS.index("name"))
        seen["elide"] = table.textElideMode()
        # The settings column keeps its start: what tells runs apart comes first.
        option = QStyleOptionViewItem()
        settings = COLUMNS.index("settings")
        delegate = table.itemDelegateForColumn(settings)
        assert isinstance(delegate, QStyledItemDelegate)
        delegate.initStyleOption(option, view.table_model.index(0, settings))
        seen["settings_elide"] = option.textElideMode
        # Wider, the name column widens with the table (up to a limit).
        view.resize(RUNS_TAB_AT_1024[0] + 100, RUNS_TAB_AT_1024[1])
        qtbot.waitUntil(lambda: table.viewport().width() > width)
        seen["wider_name"] = header.sectionSize(COLUMNS.index("name"))

    _drive(qapp, qtbot, runs.path, scenario)
    width = seen["width"]
    assert isinstance(width, int)
    assert seen["scrolled"] == 0
    spans = seen["spans"]
    assert isinstance(spans, dict)
    for name, (left, right) in spans.items():
        assert left >= 0 and right <= width, (name, left, right, width)
    assert all(seen["headers_fit"].values()), seen["headers_fit"]  # type: ignore[attr-defined]
    name_width = seen["name_width"]
    assert isinstance(name_width, int) and name_width >= NAME_MIN_PX
    assert seen["elide"] == Qt.TextElideMode.ElideMiddle
    assert seen["settings_elide"] == Qt.TextElideMode.ElideRight
    assert isinstance(seen["wider_name"], int) and seen["wider_name"] > name_width
