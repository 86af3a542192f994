"""The Requests table model against a real SQLite file, driven on a qasync loop."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import run_on_qasync
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from engine.contracts import ErrorBody
from engine.tasks import TaskOwner
from engine.work import Work
from gui.history.requests_table_model import PAGE, RequestsTableModel
from gui.history.requests_view import RequestsView
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
            result["label"] = view.search_label.text()
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
    assert result["label"] == "no matching requests" and result["found"] == 0
