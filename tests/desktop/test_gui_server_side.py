"""The server's own figures in the desktop app: the load plots' server curves and their line
(sources, what is missing, whether the client's and the server's views agree), the Load
panel's server line live and stored, the target dialog's sources, a trace's interval of a run
whose server sent no stages, and the Runs view's lines for a fleet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from conftest import run_on_qasync
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from qt_helpers import wait_for

from engine.remote.load.snapshot import LoadSnapshot
from engine.tasks import TaskOwner
from gui.history.trace_view import TraceView
from gui.load.load_panel import LoadPanel
from gui.load.load_plots import LoadPlots
from gui.runs.run_report import server_lines
from gui.targets.target_dialog import DraftError, TargetDialog

SOURCES = ["OIP statistics", "metrics http://127.0.0.1:8002/metrics (Triton names)"]


def _snap(elapsed_s: float, server: dict[str, Any] | None) -> LoadSnapshot:
    return LoadSnapshot(
        elapsed_s=elapsed_s,
        sent=int(elapsed_s * 400),
        in_flight=4,
        completed=int(elapsed_s * 400),
        ok=int(elapsed_s * 400),
        failed=0,
        errors={},
        throughput_per_s=400.0,
        errors_per_s=0.0,
        p50_ms=9.0,
        p99_ms=14.0,
        stage_ms={},
        done=False,
        server=server,
    )


def _live(**interval: Any) -> dict[str, Any]:
    return {"interval": interval or None, "in_use": SOURCES, "problems": []}


def test_the_load_plots_draw_the_servers_figures_beside_the_clients(qtbot: QtBot) -> None:
    plots = LoadPlots(redraw_hz=30)
    qtbot.addWidget(plots)
    plots.resize(1200, 500)
    plots.show()
    plots.on_snapshot(_snap(0.5, _live()))  # before the server's first interval: gaps
    figures = {"throughput_per_s": 410.0, "queue_ms": 1.5, "compute_ms": 8.0, "pending": 3.0}
    for i in range(1, 6):
        plots.on_snapshot(_snap(0.5 + i, _live(**figures)))
    pending = plots.series["server_pending"].view()
    assert np.isnan(pending[0]) and list(pending[1:]) == [3.0] * 5
    assert list(plots.series["server_queue"].view()[1:]) == [1.5] * 5
    curve = plots.curves["server_pending"]
    qtbot.waitUntil(lambda: curve.getData()[1] is not None and len(curve.getData()[1]) == 6)
    # 410/s × 9.5 ms = 3.9 requests in the server against 4 out: the views agree.
    text = plots.server_label.text()
    assert plots.server_label.isVisible()
    assert text.startswith("Server figures from OIP statistics, metrics http://127.0.0.1:8002")
    assert text.endswith("client and server agree")
    assert "server 410/s, pending 3" in (plots.readout(float(plots.t.view()[-1])) or "")

    # Another caller doubles the server's rate: the line says the views part, and why.
    plots.on_snapshot(_snap(7.0, _live(**(figures | {"throughput_per_s": 900.0}))))
    assert "client and server disagree: the server counts 900 requests/s" in (
        plots.server_label.text()
    )
    # A source that fails is named.
    plots.on_snapshot(_snap(8.0, _live(**figures) | {"problems": ["metrics …: timed out"]}))
    assert "missing: metrics …: timed out" in plots.server_label.text()
    plots.stop()


def test_the_load_panel_shows_the_servers_line_live_and_stored(qtbot: QtBot) -> None:
    panel = LoadPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.on_snapshot(_snap(1.0, _live(throughput_per_s=400.0, queue_ms=0.5, pending=2)))
    assert panel.server_label.isVisible()
    assert panel.server_label.text() == "server: 400 requests/s · queue 0.50 ms · pending 2"
    # Its own row: neither the progress bar nor the time left is drawn over it.
    qtbot.waitUntil(lambda: panel.server_label.height() > 0)
    line = panel.server_label.geometry()
    assert not line.intersects(panel.progress_bar.geometry())
    assert not line.intersects(panel.time_left.geometry())
    server = {
        "source": "metrics+oip-stats",
        "requests": 4000,
        "queue_ms": 0.5,
        "compute_ms": 2.0,
        "pending_max": 6.0,
        "batch_size_mean": 1.25,
    }
    panel.on_finished({"run_id": "r1", "ok": 4000, "server": server})
    assert panel.server_label.text() == (
        "server (metrics+oip-stats): 4,000 requests, queue 0.50 ms, compute 2.00 ms, "
        "pending max 6, batch 1.25"
    )
    panel.on_finished({"run_id": "r2", "ok": 10, "server": None})
    assert not panel.server_label.isVisible()


def test_the_target_dialog_edits_the_sources_and_names_a_missing_selector(
    qtbot: QtBot,
) -> None:
    dialog = TargetDialog("memory")
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("fleet")
    dialog.url_edit.setText("http://127.0.0.1:8000")
    dialog.prometheus_edit.setText("http://127.0.0.1:9090")
    try:
        dialog.draft()
    except DraftError as exc:
        assert [f for f, _ in exc.problems] == ["prometheus_selector"]
        assert "needs both its URL" in str(exc)
    else:
        raise AssertionError("a Prometheus URL without a selector was taken")
    dialog.selector_edit.setText('{job="inferdeck"}')
    dialog.metrics_edit.setText("http://127.0.0.1:8002/metrics")
    dialog.server_stats_box.setChecked(False)
    target, _token = dialog.draft()
    assert target.prometheus_url == "http://127.0.0.1:9090"
    assert target.prometheus_selector == '{job="inferdeck"}'
    assert target.metrics_url == "http://127.0.0.1:8002/metrics" and not target.server_stats


def test_a_trace_without_server_stages_shows_the_servers_second(
    qapp: QApplication, qtbot: QtBot
) -> None:
    view = TraceView()
    qtbot.addWidget(view)
    view.show()
    row = {
        "request_id": "req-1.client",
        "run_id": "run-1",
        "status": "ok",
        "model": "iris",
        "target": "127.0.0.1:8000",
        "source": "load",
        "started_us": 1_000_400_000,
        "ended_us": 1_000_412_000,
        "latency_us": 12_000,
        "spans": '[["wait", 0, 11000], ["receive", 11000, 1000]]',
        "metadata": "{}",
        "input": "{}",
    }
    summary = {
        "server": {"in_use": ["OIP statistics"]},
        "server_series": [
            {"at_us": 1_000_000_000, "seconds": 1.0, "throughput_per_s": 380.0},
            {"at_us": 1_001_000_000, "seconds": 1.0, "throughput_per_s": 395.0, "queue_ms": 3.25},
        ],
    }
    asked: list[str] = []

    async def runs(run_id: str) -> dict[str, Any] | None:
        asked.append(run_id)
        return summary

    async def requests(_request_id: str) -> dict[str, Any] | None:
        return None

    async def scenario() -> None:
        tasks = TaskOwner()
        view.set_lookup(requests, tasks, runs)
        view.show_request(row)
        await wait_for(lambda: view.server_interval.isVisible())
        await tasks.wait()

    run_on_qasync(qapp, scenario())
    assert asked == ["run-1"]
    assert view.server_interval.text() == (
        "The server's own figures for that second (from OIP statistics): "
        "395 requests/s · queue 3.25 ms"
    )


def test_the_runs_view_lists_a_fleet_per_replica() -> None:
    replica = {"requests": 30, "queue_ms": 0.2, "compute_ms": 1.0, "pending_max": 2.0}
    server = {
        "source": "prometheus",
        "in_use": ['Prometheus http://127.0.0.1:9090 {job="x"}, 2 replicas'],
        **replica,
        "requests": 60,
        "batch_size_mean": None,
        "replicas": [{"instance": "a:1", **replica}, {"instance": "b:2", **replica}],
        "missing": ["batch_size_mean"],
    }
    lines = server_lines(server)
    assert lines[0] == 'server, from Prometheus http://127.0.0.1:9090 {job="x"}, 2 replicas:'
    assert lines[1].startswith("  60 requests · queue 0.20 ms")
    assert lines[2].startswith("  a:1: 30 requests") and lines[3].startswith("  b:2: 30")
    assert lines[4] == "  missing: batch_size_mean"
    assert server_lines({"source": None, "missing": ["metrics: down"]}) == [
        "server: no statistics (metrics: down)"
    ]
