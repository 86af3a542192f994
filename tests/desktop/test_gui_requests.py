"""The Requests table model against a real SQLite file, driven on a qasync loop."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
import qasync
from conftest import run_cli, run_on_qasync
from live_server import free_port
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.contracts import ErrorBody
from engine.remote.target_store import make_target
from engine.tasks import TaskOwner
from engine.work import Work
from gui.app import run_app
from gui.history.requests_table_model import COLUMNS, PAGE, RequestsTableModel
from gui.history.requests_view import RequestsView
from gui.main_window import MainWindow
from storage import open_database, queries
from storage.queries import REQUEST_COLUMNS, RequestFilter, request_search

ROWS = 1000


def _fill(path: Path) -> None:
    rows = []
    for i in range(ROWS):
        row = dict.fromkeys(REQUEST_COLUMNS)
        row.update(
            request_id=f"req-{i:05d}",
            source="file:a.jsonl",
            target="local",
            model="iris",
            client_id="cli",
            status="interrupted" if i % 100 == 0 else "ok",
            created_us=1_700_000_000_000_000 + i * 1000,
            latency_us=1000 + (i * 7919) % 5000,
            input=json.dumps(
                {"sepal_length": 5.0, "sepal_width": 3.0, "petal_length": 1.5, "petal_width": 0.2}
            ),
            output=json.dumps({"label": "setosa", "scores": {"setosa": 1.0}}),
        )
        rows.append(tuple(row[c] for c in REQUEST_COLUMNS))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
            rows,
        )


def test_pages_filters_live_tail_and_rerun(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    path = tmp_path / "r.db"
    result: dict[str, object] = {}

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill(path)
        db = await open_database(path)
        tasks = TaskOwner()
        try:
            model = RequestsTableModel(db, tasks)
            model.set_filter(RequestFilter())
            await tasks.wait()
            result["first"] = (model.rowCount(), model.row(0)["request_id"])
            model.fetchMore()
            await tasks.wait()
            result["second"] = model.rowCount()
            model.set_filter(RequestFilter(status="interrupted"))
            await tasks.wait()
            result["interrupted"] = {model.row(i)["status"] for i in range(model.rowCount())}
            result["interrupted_count"] = model.rowCount()
            model.set_filter(RequestFilter(), sort="latency")
            await tasks.wait()
            latencies = [model.row(i)["latency_us"] for i in range(model.rowCount())]
            result["latency_sorted"] = latencies == sorted(latencies, reverse=True)

            model.set_filter(RequestFilter())
            await tasks.wait()
            live = Work(
                request_id="live-1",
                run=None,  # type: ignore[arg-type]
                sink=None,  # type: ignore[arg-type]
                source="form",
                client_id="gui",
                model=None,
                features=None,
                priority=0,
                input_json=None,
                accepted_ns=0,
                created_us=1_800_000_000_000_000,
                spans=[],
                status="rejected",
                error=ErrorBody(code="validation_error", message="bad"),
            )
            model.add_live([live])
            result["live_top"] = (model.row(0)["request_id"], model.data(model.index(0, 6)))

            view = RequestsView(model, ["iris"])
            qtbot.addWidget(view)
            view.status_box.setCurrentText("interrupted")
            await tasks.wait()
            view.table.selectRow(0)
            with qtbot.waitSignal(view.sigRerun, timeout=1000) as blocker:
                view.rerun_selected()
            result["rerun"] = blocker.args
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, scenario())
    assert result["first"] == (PAGE, "req-00999")
    assert result["second"] == 2 * PAGE
    assert result["interrupted"] == {"interrupted"} and result["interrupted_count"] == 10
    assert result["latency_sorted"] is True
    assert result["live_top"] == ("live-1", "bad")
    rerun = result["rerun"]
    assert isinstance(rerun, list) and rerun[0] == "iris" and rerun[1]["sepal_length"] == 5.0


CLIENTS = ("gui", "cli", "acme")
SOURCES = ("form", "/data/iris.jsonl", "http")


def _fill_mixed(path: Path) -> None:
    rows = []
    for i in range(600):
        row = dict.fromkeys(REQUEST_COLUMNS)
        row.update(
            request_id=f"mix-{i:04d}",
            source=SOURCES[i % 3],
            target="local",
            model="iris",
            client_id=CLIENTS[(i // 3) % 3],
            status="ok",
            created_us=1_700_000_000_000_000 + i * 1000,
            latency_us=1000 + i,
            input=json.dumps({"sepal_length": 5.0}),
        )
        rows.append(tuple(row[c] for c in REQUEST_COLUMNS))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
            rows,
        )


def _live(request_id: str, client_id: str, source: str) -> Work:
    return Work(
        request_id=request_id,
        run=None,  # type: ignore[arg-type]
        sink=None,  # type: ignore[arg-type]
        source=source,
        client_id=client_id,
        model=None,
        features=None,
        priority=0,
        input_json='{"sepal_length": 6.1}',
        accepted_ns=0,
        created_us=1_800_000_000_000_000,
        spans=[],
        status="ok",
    )


def test_client_and_source_filters_drive_the_model_and_the_live_tail(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small scan windows, so a text search here takes several steps as it does in a big history.
    monkeypatch.setattr(request_search, "SCAN_WINDOW", 50)
    monkeypatch.setattr(queries.RequestScan, "MAX_WINDOW", 100)
    path = tmp_path / "m.db"
    result: dict[str, object] = {}

    def rows(model: RequestsTableModel) -> list[tuple[str, str]]:
        return [
            (model.row(i)["client_id"], model.row(i)["source"]) for i in range(model.rowCount())
        ]

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill_mixed(path)
        db = await open_database(path)
        tasks = TaskOwner()
        try:
            model = RequestsTableModel(db, tasks)
            view = RequestsView(model, ["iris"])
            qtbot.addWidget(view)
            view.apply_filter()
            view.refresh_choices()
            await tasks.wait()
            box = view.client_box
            result["clients"] = [box.itemText(i) for i in range(box.count())]
            completer = view.source_edit.completer()
            assert completer is not None
            result["sources"] = completer.model().stringList()  # type: ignore[attr-defined]
            result["tooltips"] = all(
                w.toolTip()
                for w in (view.status_box, view.model_box, box, view.source_edit, view.text_edit)
            )

            box.setCurrentText("acme")
            await tasks.wait()
            result["acme"] = rows(model)
            view.source_edit.setText("/data/iris.jsonl")
            qtbot.keyClick(view.source_edit, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]
            await tasks.wait()
            result["acme_file"] = rows(model)
            result["acme_file_loaded"] = model.canFetchMore()

            model.add_live(
                [
                    _live("live-other-client", "gui", "/data/iris.jsonl"),
                    _live("live-other-source", "acme", "form"),
                    _live("live-match", "acme", "/data/iris.jsonl"),
                ]
            )
            result["live_top"] = model.row(0)["request_id"]
            result["live_count"] = model.rowCount()

            searching: list[int] = []
            model.sigSearching.connect(searching.append)
            view.source_edit.clear()
            box.setCurrentIndex(0)
            await tasks.wait()
            view.text_edit.setText("nothing like this")
            qtbot.keyClick(view.text_edit, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]
            await tasks.wait()
            result["searching"] = searching
            result["label"] = view.empty_label.text()
            result["empty_shown"] = not view.empty_label.isHidden()
            result["found"] = model.rowCount()
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, scenario())
    assert result["clients"] == ["any client", "acme", "cli", "gui"]
    assert result["sources"] == ["http", "/data/iris.jsonl", "form"]  # newest first
    assert result["tooltips"] is True
    stored = [(CLIENTS[(i // 3) % 3], SOURCES[i % 3]) for i in reversed(range(600))]
    assert result["acme"] == [r for r in stored if r[0] == "acme"]
    want = [r for r in stored if r == ("acme", "/data/iris.jsonl")]
    assert result["acme_file"] == want and len(want) == 66
    assert result["acme_file_loaded"] is False  # fewer than a page: the history has no more
    assert result["live_top"] == "live-match" and result["live_count"] == len(want) + 1
    searching = result["searching"]
    assert isinstance(searching, list) and len(searching) >= 3 and searching[-1] < 600
    assert searching == sorted(searching)
    # The empty state is a label beside the table, never one of its rows.
    assert result["label"] == "No requests match these filters." and result["found"] == 0
    assert result["empty_shown"] is True


# -- live from every writer, filter as you type, sort, scope ------------------------------------

SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _shown_view(qtbot: QtBot, model: RequestsTableModel) -> RequestsView:
    view = RequestsView(model, ["iris"])
    qtbot.addWidget(view)
    view.resize(1200, 500)
    view.show()
    view.apply_filter()
    return view


def test_rows_another_process_stores_appear_without_a_filter_change(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """`inferdeck predict` in another process on the same file: its rows join the open view
    on their own (no filter change), the rejected one with the model it named and each with
    its file line; a request pushed live and then found by the tail shows once."""
    path = tmp_path / "live.db"
    data = tmp_path / "rows.jsonl"
    bad = {**SETOSA, "sepal_length": "n/a"}
    data.write_text(json.dumps(SETOSA) + "\n" + json.dumps(bad) + "\n")
    result: dict[str, object] = {}

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill(path)
        db = await open_database(path)
        tasks = TaskOwner()
        try:
            model = RequestsTableModel(db, tasks)
            view = _shown_view(qtbot, model)
            await wait_for(lambda: model.rowCount() == PAGE and not model.loading)
            resets: list[int] = []
            model.modelReset.connect(lambda: resets.append(1))
            loop = asyncio.get_running_loop()
            done = await loop.run_in_executor(
                None, lambda: run_cli(["predict", data, "--model", "iris"], path)
            )
            result["exit"] = done.code
            await wait_for(lambda: model.rowCount() == PAGE + 2, timeout_s=15)
            rows = {model.row(i)["status"]: i for i in range(2)}
            result["statuses"] = sorted(rows)
            rejected = rows["rejected"]
            result["rejected_model"] = model.data(model.index(rejected, COLUMNS.index("model")))
            result["sources"] = sorted(
                str(model.data(model.index(i, COLUMNS.index("source")))) for i in range(2)
            )

            # Pushed live by this app's engine, then stored: the tail finds it and skips it.
            model.add_live([_live("pushed-1", "gui", "form")])
            row = dict.fromkeys(REQUEST_COLUMNS)
            row.update(
                request_id="pushed-1",
                source="form",
                target="local",
                client_id="gui",
                status="ok",
                created_us=1_800_000_000_000_000,
                input='{"sepal_length": 6.1}',
            )
            with sqlite3.connect(path) as other:
                other.execute(
                    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
                    tuple(row[c] for c in REQUEST_COLUMNS),
                )
                newest = other.execute("SELECT max(id) FROM requests").fetchone()[0]
            await wait_for(lambda: (model._tail_from or 0) >= newest and not model._tailing)
            ids = [model.row(i)["request_id"] for i in range(model.rowCount())]
            result["pushed_once"] = ids.count("pushed-1")

            # A served request acknowledged first (`queued`), its result stored later: the
            # row on show moves on to its result.
            row.update(request_id="served-1", source="http", status="queued")
            with sqlite3.connect(path) as other:
                other.execute(
                    f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
                    tuple(row[c] for c in REQUEST_COLUMNS),
                )
            await wait_for(lambda: model.row(0)["request_id"] == "served-1")
            result["served_source"] = model.data(model.index(0, COLUMNS.index("source")))
            with sqlite3.connect(path) as other:
                other.execute(
                    "UPDATE requests SET status = 'ok', latency_us = 1500 "
                    "WHERE request_id = 'served-1'"
                )
            await wait_for(lambda: model.row(0)["status"] == "ok")
            result["resets"] = len(resets)
            assert view.target_box.currentText() == "every target"
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, scenario())
    assert result["exit"] == 1  # a row was rejected
    assert result["statuses"] == ["ok", "rejected"]
    assert result["rejected_model"] == "iris"
    assert result["sources"] == ["rows.jsonl:1", "rows.jsonl:2"]
    assert result["pushed_once"] == 1
    assert result["served_source"] == "serve"
    assert result["resets"] == 0  # no reload, no filter change: the rows came by the tail


def _fill_labelled(path: Path) -> None:
    """300 accepted rows (compact JSON, as the engine writes them) labelled in turn, one with
    sepal_length 7.9; and a rejected row whose raw body is spaced (as `json.dumps` writes)."""
    labels = ("setosa", "virginica", "versicolor")
    rows = []
    for i in range(300):
        row = dict.fromkeys(REQUEST_COLUMNS)
        values = {**SETOSA, "sepal_length": 7.9 if i == 40 else 5.0}
        row.update(
            request_id=f"lab-{i:04d}",
            source="form" if i % 2 else "/data/iris.csv",
            source_row=None if i % 2 else i + 1,
            target="web" if i % 5 == 0 else "local",
            model="iris",
            client_id="gui",
            status="ok",
            created_us=1_700_000_000_000_000 + i * 1000,
            latency_us=1000 + (i * 7919) % 5000,
            input=json.dumps(values, separators=(",", ":")),
            # Every output scores every class, as the engine writes them.
            output=json.dumps(
                {"label": labels[i % 3], "scores": dict.fromkeys(labels, 0.3)},
                separators=(",", ":"),
            ),
        )
        if i % 5 == 0:
            row["source"] = "load" if i % 10 else "remote"
        rows.append(row)
    rejected = dict.fromkeys(REQUEST_COLUMNS)
    rejected.update(
        request_id="lab-rejected",
        source="form",
        target="local",
        model="iris",
        client_id="gui",
        status="rejected",
        created_us=1_700_000_000_000_000 + 400 * 1000,
        input=json.dumps({"sepal_length": 7.9, "sepal_width": "n/a"}),
        error=json.dumps({"code": "validation_error", "message": "sepal_width: not a number"}),
    )
    rows.append(rejected)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
            [tuple(r[c] for c in REQUEST_COLUMNS) for r in rows],
        )


def test_typing_filters_with_a_count_labels_and_the_traces_json(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.db"
    result: dict[str, object] = {}

    def ids(model: RequestsTableModel) -> set[str]:
        return {model.row(i)["request_id"] for i in range(model.rowCount())}

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill_labelled(path)
        db = await open_database(path)
        tasks = TaskOwner()
        try:
            model = RequestsTableModel(db, tasks)
            view = _shown_view(qtbot, model)
            await wait_for(lambda: model.rowCount() == PAGE and not model.loading)
            await wait_for(lambda: view.count_label.text() == "301 matches")
            resets: list[int] = []
            model.modelReset.connect(lambda: resets.append(1))
            # No Enter: the filter applies once typing pauses.
            qtbot.keyClicks(view.text_edit, "virginica")  # type: ignore[no-untyped-call]
            await wait_for(lambda: view.count_label.text() == "100 matches")
            result["resets"] = len(resets)
            result["labels"] = {
                model.data(model.index(i, COLUMNS.index("result"))) for i in range(model.rowCount())
            }
            result["rows"] = model.rowCount()

            # The input as the Trace view prints it (indented JSON), one line of it typed.
            stored = model.row(0)["input"]
            shown = json.dumps(json.loads(stored), indent=2)
            assert '"sepal_length":' in stored and '"sepal_length": ' not in stored
            view.text_edit.clear()
            line = '"sepal_length": 7.9'
            assert line in shown.replace("5.0", "7.9")  # that is how the Trace spells it
            qtbot.keyClicks(view.text_edit, line)  # type: ignore[no-untyped-call]
            await wait_for(lambda: ids(model) == {"lab-0040", "lab-rejected"})
            await wait_for(lambda: view.count_label.text() == "2 matches")

            monkeypatch.setattr(request_search, "COUNT_CAP", 50)
            view.text_edit.clear()
            await wait_for(lambda: view.count_label.text() == "50+ matches")
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, scenario())
    assert result["resets"] == 1  # one filter for the whole word, applied without Enter
    assert result["labels"] == {"virginica"} and result["rows"] == 100


def test_header_sorts_scope_narrows_and_the_empty_state_is_no_row(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    result: dict[str, object] = {}

    async def load_all(model: RequestsTableModel, tasks: TaskOwner) -> None:
        await wait_for(lambda: not model.loading)
        while model.canFetchMore():
            model.fetchMore()
            await tasks.wait()

    def column(model: RequestsTableModel, name: str) -> list[str]:
        return [
            str(model.data(model.index(i, COLUMNS.index(name)))) for i in range(model.rowCount())
        ]

    async def scenario() -> None:
        db = await open_database(path)
        await db.close()
        _fill_labelled(path)
        db = await open_database(path)
        tasks = TaskOwner()
        try:
            model = RequestsTableModel(db, tasks)
            view = _shown_view(qtbot, model)
            header = view.table.horizontalHeader()

            def click(name: str) -> None:
                x = header.sectionViewportPosition(COLUMNS.index(name)) + 5
                qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, 5))  # type: ignore[no-untyped-call]

            await load_all(model, tasks)
            click("result")
            await load_all(model, tasks)
            labels = column(model, "result")
            result["label_asc"] = labels == sorted(labels) and len(labels) == 301
            result["unique"] = len({model.row(i)["request_id"] for i in range(301)}) == 301
            click("result")
            await load_all(model, tasks)
            labels = column(model, "result")
            result["label_desc"] = labels == sorted(labels, reverse=True) and len(labels) == 301
            click("latency ms")
            await load_all(model, tasks)
            latencies = [model.row(i)["latency_us"] for i in range(model.rowCount())]
            result["latency_desc"] = latencies == sorted(latencies, reverse=True)
            click("time")
            await load_all(model, tasks)

            view.set_scope("web")
            await load_all(model, tasks)
            result["scoped_targets"] = {model.row(i)["target"] for i in range(model.rowCount())}
            result["scoped_sources"] = set(column(model, "source"))
            result["scoped_rows"] = model.rowCount()
            view.target_box.setCurrentText("every target")  # widened again from the bar
            await load_all(model, tasks)
            result["widened"] = model.rowCount()
            view.set_scope(None)
            await load_all(model, tasks)
            result["local"] = {model.row(i)["target"] for i in range(model.rowCount())}
            result["file_line"] = next(
                s for s in column(model, "source") if str(s).startswith("iris.csv")
            )

            view.text_edit.setText("nothing like this")
            qtbot.keyClick(view.text_edit, Qt.Key.Key_Return)  # type: ignore[no-untyped-call]
            await load_all(model, tasks)
            result["empty_rows"] = model.rowCount()
            result["empty_label"] = (view.empty_label.isVisible(), view.empty_label.text())
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, scenario())
    assert result["label_asc"] is True and result["unique"] is True
    assert result["label_desc"] is True
    assert result["latency_desc"] is True
    assert result["scoped_targets"] == {"web"} and result["scoped_rows"] == 60
    assert result["scoped_sources"] == {"load → web", "remote → web"}
    assert result["widened"] == 301
    assert result["local"] == {"local"}
    assert result["file_line"] == "iris.csv:299"
    assert result["empty_rows"] == 0
    assert result["empty_label"] == (True, "No requests match these filters.")


def test_the_target_box_starts_at_the_windows_scope_and_follows_the_side_pane(
    qapp: QApplication, tmp_path: Path
) -> None:
    """Through the real window: the side pane starts on "Local engine", and so does History's
    target box (and its filter), not "every target"; choosing in the side pane moves it."""
    path = tmp_path / "app.db"
    asyncio.run(_create(path))
    with sqlite3.connect(path) as conn:
        for request_id, target in (("here-1", "local"), ("there-1", "web")):
            row = dict.fromkeys(REQUEST_COLUMNS)
            row.update(
                request_id=request_id,
                source="form" if target == "local" else "remote",
                target=target,
                model="iris",
                client_id="gui",
                status="ok",
                created_us=1_700_000_000_000_000,
                latency_us=1000,
            )
            conn.execute(
                f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) "
                f"VALUES ({', '.join('?' for _ in REQUEST_COLUMNS)})",
                tuple(row[c] for c in REQUEST_COLUMNS),
            )
    seen: dict[str, object] = {}

    async def drive(window: MainWindow) -> None:
        view = window.requests_view
        model = view.table_model
        seen["pane"] = window.targets.scope
        seen["box"] = view.target_box.currentText()
        seen["filter"] = model.filter.target
        window.tabs.setCurrentWidget(view)
        await wait_for(lambda: not model.loading and model.rowCount() > 0)
        seen["rows"] = [model.row(i)["request_id"] for i in range(model.rowCount())]

        target = make_target(name="web", base_url=f"http://127.0.0.1:{free_port()}")
        await window.targets_view.save(target)
        await wait_for(lambda: window.targets.names() == ["web"])
        window.targets.select("web")
        seen["box_web"] = view.target_box.currentText()
        seen["filter_web"] = model.filter.target
        await wait_for(
            lambda: (
                not model.loading
                and [model.row(i)["request_id"] for i in range(model.rowCount())] == ["there-1"]
            )
        )
        window.targets.select(None)
        seen["box_local"] = view.target_box.currentText()
        seen["filter_local"] = model.filter.target
        window.close()

    qasync.run(run_app(path, 60, drive))
    assert seen["pane"] is None
    assert (seen["box"], seen["filter"]) == ("local engine", "local")
    assert seen["rows"] == ["here-1"]  # the remote target's row waits for its scope
    assert (seen["box_web"], seen["filter_web"]) == ("web", "web")
    assert (seen["box_local"], seen["filter_local"]) == ("local engine", "local")


async def _create(path: Path) -> None:
    db = await open_database(path)
    await db.close()
