"""The Trace view: bars to scale, input/output shown, copy as JSON, run again."""

from __future__ import annotations

import json

from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from gui.history.trace_view import TraceView

ROW = {
    "request_id": "req-7",
    "status": "ok",
    "model": "iris",
    "client_id": "gui",
    "source": "form",
    "created_us": 1,
    "latency_us": 10_000,
    "input": json.dumps({"sepal_length": 5.1, "sepal_width": 3.5}),
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


def test_waterfall_is_to_scale_and_actions_work(qtbot: QtBot) -> None:
    view = TraceView()
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    view.show_request(ROW)
    rects = view.waterfall.bar_rects()
    assert [s[0] for s in view.waterfall.spans] == ["validate", "queue_wait", "inference", "write"]
    widths = [r.width() for r in rects]
    assert abs(widths[2] / widths[0] - 5.0) < 0.01  # 5 ms bar is five times the 1 ms bar
    assert rects[1].left() < rects[2].left() < rects[3].left()  # placed by start offset
    assert abs(rects[3].right() - rects[0].left() - sum(widths)) < 1  # the stages tile the request
    assert "setosa" in view.output_text.toPlainText()
    assert "sepal_length" in view.input_text.toPlainText()
    view.copy_json()
    copied = json.loads(QGuiApplication.clipboard().text())
    assert copied["request_id"] == "req-7" and copied["spans"][2][3] == {"batch_size": 4}
    with qtbot.waitSignal(view.sigRerun, timeout=1000) as blocker:
        view.rerun()
    assert blocker.args == ["iris", {"sepal_length": 5.1, "sepal_width": 3.5}]
