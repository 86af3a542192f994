"""Comparing two real load runs: the Runs view's Compare, the overlaid HDR curves and the deltas'
signs and colours; and `engine.compare`'s arithmetic on its own."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import run_on_qasync
from fault_server import FaultServer, Rule
from PySide6.QtCore import QItemSelectionModel, QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QMainWindow
from pytestqt.qtbot import QtBot
from tiny_server import TinyServer, target

from engine.compare import RunFigures, decode_histogram, deltas, nines, percentile_curve
from engine.remote.load import LoadRunner
from engine.remote.payloads import PayloadSource
from engine.remote.plan import LoadPlan
from engine.stats import new_histogram
from engine.tasks import TaskOwner
from gui.runs.runs_compare import COLUMNS, VERDICT_COLOURS, RunsCompareView
from gui.runs.runs_view import RunsView
from gui.shared.plots import plot_colours
from gui.shared.theme import Theme
from storage import open_database


async def _two_runs(path: Path, fast_url: str, slow_url: str) -> tuple[str, str]:
    """A: 80 requests to a fast server, all ok. B: the same to a 200 ms server, 10 of which
    answer 503."""
    db = await open_database(path)
    try:
        # 100/s: slow enough that a busy machine's client still sends on time (latency counts
        # from the intended send, so a client that falls behind would blur A into B).
        plan = LoadPlan(rate=100, requests=80)
        fast = LoadRunner(target(fast_url), plan, PayloadSource.single({"x": 1}), db=db)
        a = await fast.run()
        slow = LoadRunner(target(slow_url), plan, PayloadSource.single({"x": 1}), db=db)
        b = await slow.run()
    finally:
        await db.close()
    return a.run_id, b.run_id


def test_compare_two_real_runs_shows_curves_and_deltas_with_the_right_signs(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    path = tmp_path / "runs.db"
    with TinyServer() as fast, FaultServer() as slow:
        slow.inject("status", count=10, after=31, status=503)  # (1 preflight + 30 ok first)
        # 200 ms, not less: on a busy machine A's own worst request can take tens of milliseconds,
        # and B's max must stay worse than any such hiccup.
        slow.add(Rule("delay", delay_s=0.2))
        a_id, b_id = asyncio.run(_two_runs(path, fast.url, slow.url))
    seen: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(path)
        tasks = TaskOwner()
        try:
            view = RunsView(db, tasks)
            qtbot.addWidget(view)
            await view.table_model.load()
            model = view.table_model
            rows = {model.run(i).run_id: i for i in range(model.rowCount())}
            assert not view.compare_button.isEnabled()
            selection = view.table.selectionModel()
            flags = (
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
            )
            selection.select(model.index(rows[b_id], 0), flags)  # the newer first: order is by time
            seen["one_selected"] = view.compare_button.isEnabled()
            selection.select(model.index(rows[a_id], 0), flags)
            seen["two_selected"] = view.compare_button.isEnabled()
            view.compare_button.click()
            window = view.compare_window
            assert isinstance(window, RunsCompareView)
            seen["ids"] = tuple(r.run_id for r in window.runs)
            seen["verdicts"] = window.verdicts()
            seen["changes"] = {d.name: (d.change, d.percent) for d in window.deltas}
            seen["curves"] = [c.getData() for c in window.curves]
            items = [
                [window.table.item(r, c) for c in range(len(COLUMNS))]
                for r in range(window.table.rowCount())
            ]
            seen["cells"] = [[i.text() if i else "" for i in row] for row in items]
            p50_change = items[0][3]
            assert p50_change is not None
            seen["p50_colour"] = p50_change.background().color().name()
            seen["legend"] = window.labels
            seen["settings"] = window.setting_cells()
            seen["differing"] = list(window.differing)
            first = window.settings.item(0, 0)
            assert first is not None
            seen["settings_above_plot"] = window.settings.y() < window.plot_widget.y()
            # The legend's text in the theme's colour (pyqtgraph kept it grey), both themes.
            legend = window.plot.legend
            assert legend is not None
            for dark in (True, False):
                window.set_dark(dark)
                colour = QColor(plot_colours(dark).foreground).name()
                seen[f"legend_{dark}"] = all(
                    colour in label.item.toHtml() for _sample, label in legend.items
                )
            # Letting go of one of the two runs closes the comparison of them.
            selection.select(
                model.index(rows[a_id], 0),
                QItemSelectionModel.SelectionFlag.Deselect | QItemSelectionModel.SelectionFlag.Rows,
            )
            seen["after_deselect"] = view.compare_window
            seen["compare_enabled"] = view.compare_button.isEnabled()
            seen["window_visible"] = window.isVisible()
            # And with nothing selected, no summary of either is left.
            view.table.clearSelection()
            await tasks.wait()
            seen["detail"] = view.detail.toPlainText()
            # A load run's CSV: each request's sent fields, the answer's label, the failure.
            for name, run_id in (("a", a_id), ("b", b_id)):
                out = tmp_path / f"{name}.csv"
                seen[f"exported_{name}"] = await view.export_run(run_id, "csv", out)
                seen[f"csv_{name}"] = list(csv.DictReader(io.StringIO(out.read_text())))
        finally:
            await tasks.wait()
            await db.close()

    run_on_qasync(qapp, main())
    assert seen["one_selected"] is False and seen["two_selected"] is True
    assert seen["ids"] == (a_id, b_id)  # the older run is the base
    verdicts = seen["verdicts"]
    assert isinstance(verdicts, dict)
    # B waits 200 ms a request and 10 of its answers are 503: every figure is worse.
    assert set(verdicts.values()) == {"worse"}, verdicts
    changes = seen["changes"]
    assert isinstance(changes, dict)
    change, percent = changes["p50 ms"]
    assert change > 150 and percent > 100  # +200 ms on a ~1 ms base
    change, percent = changes["throughput/s"]
    assert change < 0 and percent < 0  # fewer ok answers in a longer run
    assert changes["errors"] == (10.0, None)  # from 0: no percentage
    curves = seen["curves"]
    assert isinstance(curves, list) and len(curves) == 2
    (ax, ay), (_bx, by) = curves
    assert isinstance(ay, np.ndarray) and isinstance(by, np.ndarray)
    assert np.all(np.diff(ax) > 0) and np.all(np.diff(ay) >= 0)  # a percentile curve rises
    assert by[0] > 150 and by[len(by) // 2] > 150  # B's whole curve sits at ≥ 200 ms
    cells = seen["cells"]
    assert isinstance(cells, list)
    assert cells[0][0] == "p50 ms" and cells[0][3].startswith("+") and cells[0][5] == "worse"
    assert seen["p50_colour"] == VERDICT_COLOURS["worse"]
    # Both runs' settings side by side, above the figures; what differs is highlighted.
    settings = {name: (va, vb) for name, va, vb in seen["settings"]}  # type: ignore[attr-defined]
    assert settings["name"][0].startswith("load → t · ")
    assert settings["kind"] == ("load", "load") and settings["status"] == ("done", "done")
    assert settings["target"] == ("t", "t")
    assert settings["rate"] == ("100/s", "100/s") and settings["requests"] == ("80", "80")
    assert settings["URL"][0] != settings["URL"][1]  # two servers on two ports
    assert settings["payloads"][0] == settings["payloads"][1]
    differing = seen["differing"]
    assert isinstance(differing, list) and "URL" in differing and "rate" not in differing
    # The names first, then what differs, then what the two share.
    order = [name for name, _a, _b in seen["settings"]]  # type: ignore[attr-defined]
    rest = [d for d in differing if d != "name"]
    assert order[0] == "name" and order[1 : 1 + len(rest)] == rest
    assert seen["legend_True"] is True and seen["legend_False"] is True
    assert seen["settings_above_plot"] is True
    assert seen["after_deselect"] is None and seen["compare_enabled"] is False
    assert seen["window_visible"] is False
    assert seen["detail"] == ""
    assert seen["exported_a"] == seen["exported_b"] == 80
    a_rows, b_rows = seen["csv_a"], seen["csv_b"]
    assert isinstance(a_rows, list) and isinstance(b_rows, list)
    assert {r["input.x"] for r in a_rows + b_rows} == {"1"}
    assert {(r["status"], r["label"]) for r in a_rows} == {("ok", "a")}  # the answer's label
    failed = [r for r in b_rows if r["status"] == "failed"]
    assert len(failed) == 10 and all("503" in r["error"] for r in failed), failed[:1]


def test_compare_arithmetic_and_colours_of_better_worse_same() -> None:
    def run(**values: float | None) -> RunFigures:
        base = dict.fromkeys(
            ("p50 ms", "p90 ms", "p99 ms", "max ms", "throughput/s", "errors"), 1.0
        )
        return RunFigures("r", "r", {**base, **values})

    result = {
        d.name: d
        for d in deltas(
            run(**{"p50 ms": 10.0, "throughput/s": 100.0, "errors": 0.0, "max ms": None}),
            run(**{"p50 ms": 8.0, "throughput/s": 90.0, "errors": 3.0, "p99 ms": 1.01}),
        )
    }
    # A tiny figure's change that shows as +0.00 is no change, whatever its percentage.
    tiny = {"server queue ms": 0.0341}
    (queue,) = [
        d
        for d in deltas(run(**tiny), run(**{"server queue ms": 0.0351}))
        if d.name == "server queue ms"
    ]
    assert queue.percent == pytest.approx(2.93, abs=0.01) and queue.verdict == "same"
    (bigger,) = [
        d
        for d in deltas(run(**tiny), run(**{"server queue ms": 0.05}))
        if d.name == "server queue ms"
    ]
    assert bigger.verdict == "worse"
    assert result["p50 ms"].change == -2.0 and result["p50 ms"].percent == pytest.approx(-20)
    assert result["p50 ms"].verdict == "better"  # lower latency
    assert result["throughput/s"].verdict == "worse"  # lower throughput
    assert result["errors"].verdict == "worse" and result["errors"].percent is None  # from 0
    assert result["p99 ms"].verdict == "same"  # within 2 %
    assert result["max ms"].verdict == "" and result["max ms"].change is None


def test_stored_histograms_decode_into_a_rising_hdr_curve() -> None:
    hist = new_histogram()
    for us in range(1000, 11000, 10):  # 1,000 values from 1 to 11 ms
        hist.record_value(us)
    decoded = decode_histogram(hist.encode())
    assert decoded is not None and decoded.get_total_count() == 1000
    xs, ys = percentile_curve(decoded)
    assert xs[0] == 0 and xs[-1] == pytest.approx(3.0)  # 1,000 values: three nines of detail
    assert ys[-1] == pytest.approx(10.99, rel=0.01)
    assert nines(90) == pytest.approx(1) and nines(99.9) == pytest.approx(3)
    assert decode_histogram(None) is None and decode_histogram(b"garbage") is None
    assert decode_histogram(new_histogram().encode()) is None  # nothing recorded


def test_the_compare_plot_follows_the_apps_theme(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """pyqtgraph ignores the palette: opened under the dark theme, the compare window's plot is
    dark, and it turns light with the app (it stayed white in the dark theme)."""
    path = tmp_path / "runs.db"
    with TinyServer() as one, TinyServer() as other:
        a_id, b_id = asyncio.run(_two_runs(path, one.url, other.url))
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    theme = Theme(qapp, settings)
    original = QPalette(qapp.palette())
    seen: dict[str, object] = {}

    async def main() -> None:
        db = await open_database(path)
        tasks = TaskOwner()
        window = QMainWindow()
        window.theme = theme  # type: ignore[attr-defined]  # (as MainWindow holds it)
        qtbot.addWidget(window)
        try:
            view = RunsView(db, tasks)
            window.setCentralWidget(view)
            theme.choose("dark")
            await view.table_model.load()
            model = view.table_model
            flags = (
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
            )
            for i in range(model.rowCount()):
                if model.run(i).run_id in (a_id, b_id):
                    view.table.selectionModel().select(model.index(i, 0), flags)
            view.compare_button.click()
            compare = view.compare_window
            assert isinstance(compare, RunsCompareView)
            plot = compare.plot
            seen["dark"] = (
                compare.plot_widget.backgroundBrush().color().name(),
                plot.getAxis("left").textPen().color().name(),
                plot.getAxis("bottom").pen().color().name(),
            )
            theme.choose("light")
            seen["light"] = compare.plot_widget.backgroundBrush().color().name()
        finally:
            await tasks.wait()
            await db.close()

    try:
        run_on_qasync(qapp, main())
    finally:
        theme.choose("light")
        qapp.setPalette(original)
    dark = plot_colours(True)
    assert seen["dark"] == (dark.background, dark.foreground, dark.foreground)
    assert seen["light"] == plot_colours(False).background
