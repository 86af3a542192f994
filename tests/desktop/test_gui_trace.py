"""The Trace view: spans as a tree under a time axis, bars to scale, each span's attributes on
selection and hover, labelled input and output, copy as JSON; a remote request's server stages
inside its wait (from a real `inferdeck serve`); and Run again as a request of its own, linked
to the original, through the real app."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import qasync
from conftest import run_on_qasync
from live_server import LiveServer
from PySide6.QtCore import QPoint
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLabel, QLineEdit, QMessageBox, QTreeWidgetItem
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.ids import short_id
from engine.remote.client import TargetClient
from engine.remote.oip_form import adapter_for, send_prediction
from engine.remote.target_store import make_target
from engine.server import ServerSettings, asgi_app
from engine.tasks import TaskOwner
from gui.app import run_app
from gui.history.trace_tree import SpanNode, axis_ticks, build_tree, tick_label
from gui.history.trace_view import TraceView, compare_answers
from gui.history.trace_waterfall import NAME_COL, ROLE, SpanTreeView
from gui.main_window import MainWindow
from storage import open_database, queries

SLOW_S = 30.0  # the whole app on a busy machine: a generous deadline, never a sleep
INPUT = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
ROW = {
    "request_id": "req-7",
    "status": "ok",
    "model": "iris",
    "client_id": "gui",
    "source": "form",
    "target": "local",
    "created_us": 1,
    "latency_us": 10_000,
    "input": json.dumps(INPUT),
    "metadata": None,
    "output": json.dumps({"label": "setosa", "scores": {"setosa": 0.99}}),
    "error": None,
    "spans": json.dumps(
        [
            ["validate", 0, 1000],
            ["queue_wait", 1000, 2000],
            ["inference", 3000, 5000, {"batch_size": 4}],
            ["write", 8000, 2000],
        ]
    ),
}


def _node(item: QTreeWidgetItem | None) -> SpanNode:
    assert item is not None
    node = item.data(NAME_COL, ROLE)
    assert isinstance(node, SpanNode)
    return node


def _children(item: QTreeWidgetItem | None) -> list[QTreeWidgetItem]:
    assert item is not None
    found = [item.child(i) for i in range(item.childCount())]
    return [child for child in found if child is not None]


def _named(tree: SpanTreeView, name: str) -> QTreeWidgetItem:
    item = tree.item_named(name)
    assert item is not None, name
    return item


def _view(qtbot: QtBot) -> TraceView:
    view = TraceView()
    qtbot.addWidget(view)
    view.resize(1100, 650)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_local_trace_is_a_tree_under_a_time_axis_with_span_details(qtbot: QtBot) -> None:
    view = _view(qtbot)
    view.show_request(ROW)
    tree = view.waterfall
    root = tree.topLevelItem(0)
    assert tree.topLevelItemCount() == 1 and root is not None and root.text(0) == "request"
    # The engine's stages are indented under the request, in time order.
    assert [child.text(0) for child in _children(root)] == [
        "validate",
        "queue_wait",
        "inference",
        "write",
    ]

    # The time axis: round ticks in ms from 0 to the request's end, left to right.
    ticks = tree.tick_positions()
    labels = [label for _x, label in ticks]
    assert (
        labels[0] == "0"
        and "10 ms" in labels
        and all(label == "0" or label.endswith(" ms") for label in labels)
    )
    xs = [x for x, _label in ticks]
    assert xs == sorted(xs) and len(xs) >= 3
    # Bars share the axis' geometry: the request's bar runs from tick 0 to the 10 ms tick.
    whole = tree.bar_rect(_node(root))
    assert abs(whole.left() - xs[0]) < 1 and abs(whole.right() - xs[labels.index("10 ms")]) < 1
    bars = {child.text(0): tree.bar_rect(_node(child)) for child in _children(root)}
    assert abs(bars["inference"].width() / bars["validate"].width() - 5.0) < 0.01
    assert bars["queue_wait"].left() < bars["inference"].left() < bars["write"].left()

    # Selecting a span shows what it carries: timing, share of the whole, batch size.
    tree.setCurrentItem(_named(tree, "inference"))
    details = view.detail_rows()
    assert details["duration"] == "5.000 ms" and details["start"] == "+3.000 ms"
    assert details["share of total"] == "50.0 %" and details["batch size"] == "4"
    assert view.details_box.title() == "Span: inference"
    # Hovering another span shows it instead; leaving goes back to the selected one.
    write = _named(tree, "write")
    point = tree.visualItemRect(write).center()
    QTest.mouseMove(tree.viewport(), point)
    qtbot.waitUntil(lambda: view.details_box.title() == "Span: write", timeout=2000)
    assert view.detail_rows()["share of total"] == "20.0 %"
    below = tree.visualItemRect(write).bottomLeft() + QPoint(20, 40)  # under the last row
    QTest.mouseMove(tree.viewport(), below)
    qtbot.waitUntil(lambda: view.details_box.title() == "Span: inference", timeout=2000)

    # Input and output are titled panes with pretty JSON.
    assert (view.input_box.title(), view.output_box.title()) == ("Input", "Output")
    assert '\n  "sepal_length": 5.1' in view.input_text.toPlainText()
    assert '\n  "label": "setosa"' in view.output_text.toPlainText()

    view.copy_json()
    copied = json.loads(QGuiApplication.clipboard().text())
    assert copied["request_id"] == "req-7" and copied["spans"][2][3] == {"batch_size": 4}
    with qtbot.waitSignal(view.sigRerun, timeout=1000) as blocker:
        view.rerun_button.click()
    assert blocker.args == ["req-7", "iris", INPUT]


def test_a_rejected_request_says_error_over_its_output(qtbot: QtBot) -> None:
    view = _view(qtbot)
    error = {"code": "validation_error", "message": "sepal_length: not a number"}
    view.show_request(
        {**ROW, "status": "rejected", "output": None, "error": json.dumps(error), "spans": "[]"}
    )
    assert view.output_box.title() == "Output (error)"
    assert "not a number" in view.output_text.toPlainText()
    view.waterfall.setCurrentItem(_named(view.waterfall, "request"))
    assert view.detail_rows()["error"] == "sepal_length: not a number"


def test_remote_request_nests_the_servers_stages_in_its_wait(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    # `inferdeck serve` and the app on one database, as on one machine: the server's own row
    # (with its batch size) is found beside the client's.
    db_path = tmp_path / "shared.db"
    served = LiveServer(ServerSettings(db_path=db_path))
    served.start()
    view = _view(qtbot)
    found: dict[str, Any] = {}

    async def main() -> None:
        db = await open_database(db_path)
        tasks = TaskOwner()
        target = make_target(name="local-serve", base_url=served.url, model="iris")
        client = TargetClient(target, trace_every=1)
        try:
            answer = await send_prediction(client, adapter_for(target, None), INPUT, db=db)
            row = await queries.get_request(db.reader, answer.request_id)
            assert row is not None
            found["row"] = row
            view.show_request(row)  # no lookup yet: the Server-Timing estimate
            tree = view.waterfall
            wait = _named(tree, "wait")
            found["header_children"] = [child.text(0) for child in _children(wait)]
            found["top"] = [child.text(0) for child in _children(tree.topLevelItem(0))]
            wait_bar = tree.bar_rect(_node(wait))
            stage_bars = [tree.bar_rect(_node(child)) for child in _children(wait)]
            found["inside"] = all(
                wait_bar.left() - 1 <= bar.left() and bar.right() <= wait_bar.right() + 1
                for bar in stage_bars
            )
            tree.setCurrentItem(wait)
            found["wait_details"] = view.detail_rows()

            # With a way to read other rows, the server's stored stages replace the estimate.
            view.set_lookup(lambda request_id: queries.get_request(db.reader, request_id), tasks)
            view.show_request(row)
            await wait_for(
                lambda: "stored" in _node(_named(tree, "server.inference")).attrs["offset"]
            )
            inference = view.waterfall.item_named("server.inference")
            assert inference is not None and inference.parent() is view.waterfall.item_named("wait")
            view.waterfall.setCurrentItem(inference)
            found["server_details"] = view.detail_rows()
        finally:
            await tasks.wait()
            await client.aclose()
            await db.close()

    try:
        run_on_qasync(qapp, main())
    finally:
        served.stop()
    assert found["row"]["source"] == "remote"
    children = found["header_children"]
    assert children and all(name.startswith("server.") for name in children)
    assert "server.inference" in children
    # The server's stages are not siblings of the client's phases.
    assert not any(name.startswith("server.") for name in found["top"])
    assert {"send", "wait", "receive"} <= set(found["top"])
    assert found["inside"]
    assert found["wait_details"]["HTTP status"] == "200"
    assert found["server_details"].get("batch size") == "1", found["server_details"]


def _texts(window: MainWindow) -> list[str]:
    """Everything the Predict panel shows in words: its labels and its fields."""
    view = window.predict_view
    return [w.text() for w in view.findChildren(QLabel)] + [
        w.text() for w in view.findChildren(QLineEdit)
    ]


def test_run_again_is_its_own_request_linked_to_the_original(
    qapp: QApplication, tmp_path: Path
) -> None:
    db = tmp_path / "app.db"
    seen: dict[str, Any] = {}

    async def drive(window: MainWindow) -> None:
        while "ready" not in window.model_state.text():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        table = window.requests_view.table_model
        window.tabs.setCurrentWidget(window.requests_view)  # (a hidden table takes no rows)
        # The original: a prediction from the form.
        window.predict_view.sigPredict.emit("iris", INPUT)
        await wait_for(
            lambda: (
                any(table.row(i)["source"] == "form" for i in range(table.rowCount()))
                and any(t == "setosa" for t in _texts(window))
            ),
            SLOW_S,
        )
        original_id = next(
            table.row(i)["request_id"]
            for i in range(table.rowCount())
            if table.row(i)["source"] == "form"
        )
        seen["original_id"] = original_id
        predict_before = _texts(window)

        # Run again from the Trace: the new request's trace opens, linked to the original.
        trace = window.trace_view
        trace.open_linked(original_id)  # the stored row, read as the app reads it
        await wait_for(lambda: trace.row is not None and trace.row["status"] == "ok", SLOW_S)
        seen["original_before"] = dict(trace.row or {})
        trace.rerun_button.click()
        await wait_for(lambda: trace.row is not None and trace.row["source"] == "rerun", SLOW_S)
        await wait_for(lambda: "same answer" in trace.link.text(), SLOW_S)
        seen["rerun_row"] = dict(trace.row or {})
        seen["link"] = trace.link.text()
        seen["link_visible"] = trace.link.isVisible()
        seen["tab"] = window.tabs.currentWidget() is trace
        seen["predict_after"] = _texts(window) == predict_before

        # The link opens the original, whose trace is as it was (no link of its own).
        href = original_id
        trace.link.linkActivated.emit(href)
        await wait_for(lambda: trace.row is not None and trace.row["request_id"] == href, SLOW_S)
        seen["original_again"] = dict(trace.row or {})
        seen["original_link_hidden"] = not trace.link.isVisible()

        # Run again from Requests: the selected row is the one repeated.
        view = window.requests_view
        for i in range(table.rowCount()):
            if table.row(i)["request_id"] == href:
                view.table.selectRow(i)
        view.rerun_selected()
        await wait_for(
            lambda: (
                trace.row is not None
                and trace.row["source"] == "rerun"
                and trace.row["request_id"] != seen["rerun_row"]["request_id"]
            ),
            SLOW_S,
        )
        seen["second"] = dict(trace.row or {})
        seen["predict_after_second"] = _texts(window) == predict_before
        window.close()

    qasync.run(run_app(db, 60, drive))
    original_id = seen["original_id"]
    rerun = seen["rerun_row"]
    assert rerun["request_id"] != original_id and rerun["status"] == "ok"
    assert json.loads(rerun["metadata"]) == {"rerun_of": original_id}
    assert f'run again of <a href="{original_id}">{short_id(original_id)}</a>' in seen["link"]
    assert "same answer (setosa)" in seen["link"] and seen["link_visible"] and seen["tab"]
    assert seen["predict_after"] and seen["predict_after_second"]
    assert seen["original_again"]["source"] == "form" and seen["original_link_hidden"]
    assert seen["original_again"] == seen["original_before"]  # the original is as it was
    assert json.loads(seen["second"]["metadata"]) == {"rerun_of": original_id}
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT source, metadata, status FROM requests WHERE request_id IN (?, ?, ?)",
            (original_id, rerun["request_id"], seen["second"]["request_id"]),
        ).fetchall()
    assert sorted(stored) == sorted(
        [
            ("form", None, "ok"),
            ("rerun", json.dumps({"rerun_of": original_id}, separators=(",", ":")), "ok"),
            ("rerun", json.dumps({"rerun_of": original_id}, separators=(",", ":")), "ok"),
        ]
    )


def test_run_again_of_a_remote_request_goes_to_its_target_again(
    qapp: QApplication, tmp_path: Path
) -> None:
    """A request sent to a remote target (a real `inferdeck serve`) runs again on that target,
    from the Trace and from Requests, with the token from the token store (never from the
    request); stored as its own request (source `rerun`, `rerun_of`); once the target is
    removed, Run again says so in words and sends nothing."""
    token = "s3cret-token"
    calls: list[tuple[str, str | None]] = []  # (path, Authorization) of each /predict
    inner = asgi_app(ServerSettings(db_path=tmp_path / "serve.db"))

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/predict":
            auth = dict(scope["headers"]).get(b"authorization")
            calls.append((scope["path"], auth.decode() if auth else None))
        await inner(scope, receive, send)

    served = LiveServer(ServerSettings(db_path=tmp_path / "serve.db"), app=recording)
    db = tmp_path / "app.db"
    seen: dict[str, Any] = {}

    async def drive(window: MainWindow) -> None:
        messages: list[str] = []
        window.statusBar().messageChanged.connect(messages.append)
        while "ready" not in window.model_state.text():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await window.targets_view.save(
            make_target(name="deck", base_url=served.url, model="iris"), token=token
        )
        # The original: a prediction sent to the target from the Predict form.
        window.targets.select("deck")
        predict = window.predict_view
        await wait_for(lambda: predict.remote_form is not None, SLOW_S)
        predict.set_values(INPUT)
        predict.submit()
        await wait_for(lambda: any(t == "setosa" for t in _texts(window)), SLOW_S)
        with sqlite3.connect(db) as conn:
            (original_id,) = conn.execute(
                "SELECT request_id FROM requests WHERE source = 'remote'"
            ).fetchone()
        seen["original_id"] = original_id
        sent_before = len(calls)

        # Run again from the Trace: sent to the same target, its trace opens.
        trace = window.trace_view
        trace.open_linked(original_id)
        await wait_for(lambda: trace.row is not None and trace.row["request_id"] == original_id)
        seen["tooltip"] = trace.rerun_button.toolTip()
        trace.rerun_button.click()
        await wait_for(lambda: trace.row is not None and trace.row["source"] == "rerun", SLOW_S)
        seen["rerun_row"] = dict(trace.row or {})
        seen["sent_by_rerun"] = calls[sent_before:]

        # Run again from Requests (scoped to the target by the side pane): the same.
        view = window.requests_view
        table = view.table_model
        window.tabs.setCurrentWidget(view)
        await wait_for(
            lambda: any(table.row(i)["request_id"] == original_id for i in range(table.rowCount())),
            SLOW_S,
        )
        for i in range(table.rowCount()):
            if table.row(i)["request_id"] == original_id:
                view.table.selectRow(i)
        view.rerun_selected()
        await wait_for(
            lambda: (
                trace.row is not None
                and trace.row["source"] == "rerun"
                and trace.row["request_id"] != seen["rerun_row"]["request_id"]
            ),
            SLOW_S,
        )
        seen["second"] = dict(trace.row or {})

        # The target removed (as the Targets view removes one): Run again says why, in words.
        targets = window.targets_view
        window.tabs.setCurrentWidget(targets)
        targets.remove_target()
        await wait_for(lambda: targets.confirm is not None and targets.confirm.isVisible())
        assert targets.confirm is not None
        targets.confirm.button(QMessageBox.StandardButton.Yes).click()
        await wait_for(lambda: window.targets.names() == [], SLOW_S)
        sent_before_gone = len(calls)
        trace.open_linked(original_id)
        await wait_for(lambda: trace.row is not None and trace.row["request_id"] == original_id)
        trace.rerun_button.click()
        await wait_for(lambda: any("no longer exists" in m for m in messages), SLOW_S)
        seen["gone"] = next(m for m in messages if "no longer exists" in m)
        seen["sent_when_gone"] = len(calls) - sent_before_gone
        seen["trace_after_gone"] = (trace.row or {}).get("request_id")
        window.close()

    served.start()
    try:
        qasync.run(run_app(db, 60, drive))
    finally:
        served.stop()
    original_id = seen["original_id"]
    assert "to deck again" in seen["tooltip"]
    assert seen["sent_by_rerun"] == [("/predict", f"Bearer {token}")]
    for rerun in (seen["rerun_row"], seen["second"]):
        assert (rerun["source"], rerun["target"], rerun["model"], rerun["status"]) == (
            "rerun",
            "deck",
            "iris",
            "ok",
        )
        meta = json.loads(rerun["metadata"])
        assert meta["rerun_of"] == original_id and meta["http_status"] == 200
        assert json.loads(rerun["input"]) == INPUT
        assert json.loads(rerun["output"])["outputs"]["label"] == "setosa"
    assert seen["rerun_row"]["request_id"] != seen["second"]["request_id"]
    assert seen["gone"].endswith("it was sent to target 'deck', which no longer exists")
    assert seen["sent_when_gone"] == 0 and seen["trace_after_gone"] == original_id
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT source, target FROM requests ORDER BY id").fetchall()
        everything = conn.execute("SELECT * FROM requests").fetchall()
    assert stored == [("remote", "deck"), ("rerun", "deck"), ("rerun", "deck")]
    assert token not in repr(everything)  # the token is never stored with a request


def test_axis_ticks_are_round_and_cover_the_request() -> None:
    assert axis_ticks(15_600, 8) == [0, 2000, 4000, 6000, 8000, 10_000, 12_000, 14_000]
    assert [tick_label(t) for t in axis_ticks(1_200, 3)] == ["0", "0.5 ms", "1 ms"]
    assert tick_label(2_000_000) == "2 s"
    # A request that never got an answer: its one span is the attempt, under the request.
    root = build_tree({**ROW, "source": "remote", "spans": json.dumps([["request", 0, 900]])})
    assert [child.name for child in root.children] == ["attempt"]


def test_answers_compare_by_label_whatever_their_shape() -> None:
    local = {"output": json.dumps({"label": "setosa", "scores": {"setosa": 0.9}}), "status": "ok"}
    served = {"output": json.dumps({"outputs": {"label": "setosa"}}), "status": "ok"}
    oip = {
        "output": json.dumps({"outputs": [{"name": "label", "data": ["virginica"]}]}),
        "status": "ok",
    }
    assert compare_answers(local, local) == "same answer (setosa)"
    assert compare_answers(served, local) == "same label (setosa)"
    assert compare_answers(oip, local) == "answer changed: virginica → setosa"
    assert compare_answers({"output": None, "status": "rejected"}, local) == "was rejected, now ok"
