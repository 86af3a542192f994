"""Two runs side by side: what each was (name, status and settings, the ones that differ
highlighted), overlaid latency distributions and a table of deltas.

The plot is the usual HDR percentile plot: latency against percentile, the percentile axis in
"nines" (90 %, 99 %, 99.9 % … equally spaced), read from each run's stored HDR histogram, so the
tail, where runs differ most, is as wide as the body. The table gives p50 / p90 / p99 / max /
throughput / errors of both runs, the change (absolute and %) from the older run (A) to the
newer (B), coloured better or worse. The numbers come from `engine.compare` (Qt-free).

pyqtgraph paints its own background and ignores the Qt palette: the window follows the app's
theme as the Monitor's plots do (`follow_theme`, `set_dark`, colours from `gui.shared.plots`).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.compare import Delta, decode_histogram, deltas, figures, nines, percentile_curve
from engine.ids import short_id
from engine.runs import run_name, run_settings
from gui.shared.plots import paint_axes, plot_colours
from gui.shared.theme import Theme
from gui.shared.when import when_text
from storage.queries import RunRow

PENS = ("#6c8ebf", "#d79b00")  # A, B
COLUMNS = ("figure", "A", "B", "change", "change %", "")
VERDICT_COLOURS = {"better": "#d5e8d4", "worse": "#f8cecc"}
ROW_HEIGHT = 24
SETTING_ROW_HEIGHT = 24
PLOT_MIN_HEIGHT = 180
SETTING_ROWS_SHOWN = 5  # a longer list scrolls (the differing ones are on top)
DIFFERS_COLOUR = "#fff2cc"  # a setting the two runs do not share


def settings_rows(a: RunRow, b: RunRow) -> list[tuple[str, str, str]]:
    """(setting, A's value, B's value) for the name, status and every setting either run has;
    a setting one run lacks reads "—"."""
    name_a = run_name(a.kind, a.config, a.started_us)
    name_b = run_name(b.kind, b.config, b.started_us)
    rows = [
        ("name", name_a, name_b),
        ("kind", a.kind, b.kind),
        ("status", a.status, b.status),
    ]
    sa, sb = run_settings(a.kind, a.config), run_settings(b.kind, b.config)
    rows.extend((k, sa.get(k, "—"), sb.get(k, "—")) for k in dict.fromkeys([*sa, *sb]))
    return rows


TICKS = (0.0, 50.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999)


def run_label(letter: str, run: RunRow) -> str:
    return f"{letter}: {run.kind} {short_id(run.run_id)} ({when_text(run.started_us)})"


def _value(value: float | None, name: str) -> str:
    if value is None:
        return "—"
    if name == "errors":
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def _signed(value: float | None, name: str, suffix: str = "") -> str:
    if value is None:
        return "—"
    text = _value(abs(value), name)
    return ("+" if value > 0 else "−" if value < 0 else "±") + text + suffix


class RunsCompareView(QWidget):
    """A window comparing run `a` (the base) with run `b`; `RunsView`'s Compare opens it."""

    def __init__(self, a: RunRow, b: RunRow, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle(f"Compare runs {short_id(a.run_id)} and {short_id(b.run_id)}")
        self.resize(1000, 720)
        self.runs = (a, b)
        hists = (decode_histogram(a.histogram), decode_histogram(b.histogram))
        self.labels = (run_label("A", a), run_label("B", b))
        self.deltas: list[Delta] = deltas(
            figures(a.run_id, self.labels[0], a.summary, hists[0]),
            figures(b.run_id, self.labels[1], b.summary, hists[1]),
        )

        self.plot_widget = pg.PlotWidget(title="Latency by percentile")
        self.dark = False
        plot = self.plot = self.plot_widget.getPlotItem()
        plot.addLegend(offset=(10, 10))
        plot.setLabel("left", "latency (ms)")
        plot.setLabel("bottom", "percentile")
        plot.showGrid(x=True, y=True, alpha=0.25)
        ticks = [(nines(p), f"{p:g}%") for p in TICKS]
        plot.getAxis("bottom").setTicks([ticks])
        self.curves: list[pg.PlotDataItem] = []
        missing = []
        for label, hist, pen in zip(self.labels, hists, PENS, strict=True):
            if hist is None:
                missing.append(label.split(":")[0])
                continue
            xs, ys = percentile_curve(hist)
            self.curves.append(plot.plot(xs, ys, pen=pg.mkPen(pen, width=2), name=label))
        note = QLabel(
            "No stored latencies for run " + " and ".join(missing)
            if missing
            else "Each curve is a run's stored HDR histogram; further right is further into "
            "the tail. Changes are B against A; green is better, red worse."
        )
        note.setWordWrap(True)

        self.table = QTableWidget(len(self.deltas), len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        for row, delta in enumerate(self.deltas):
            percent = None if delta.percent is None else delta.percent
            cells = (
                delta.name,
                _value(delta.base, delta.name),
                _value(delta.other, delta.name),
                _signed(delta.change, delta.name),
                "—" if percent is None else _signed(percent, "%", " %"),
                delta.verdict,
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if column >= 3 and delta.verdict in VERDICT_COLOURS:
                    item.setBackground(QBrush(QColor(VERDICT_COLOURS[delta.verdict])))
                    item.setForeground(QBrush(QColor("#1e1f22")))
                self.table.setItem(row, column, item)
        # Every row shows, without a scroll bar: the plot takes what is left.
        for row in range(len(self.deltas)):
            self.table.setRowHeight(row, ROW_HEIGHT)
        header_height = self.table.horizontalHeader().sizeHint().height()
        self.table.setFixedHeight(header_height + ROW_HEIGHT * len(self.deltas) + 4)
        header = QLabel("\n".join(self.labels))
        header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.settings = self._settings_table(a, b)
        layout = QVBoxLayout(self)
        layout.addWidget(header)
        layout.addWidget(self.settings)
        # With the server's rows the figures table is tall: the plot keeps a readable height
        # (the window grows instead of squashing it).
        self.plot_widget.setMinimumHeight(PLOT_MIN_HEIGHT)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(note)
        layout.addWidget(self.table)
        self.set_dark(False)

    def follow_theme(self, theme: Theme) -> None:
        """Take the app's theme now and whenever it changes (`RunsView` hands it over)."""
        theme.sigThemeChanged.connect(self.set_dark)
        self.set_dark(theme.dark)

    def set_dark(self, dark: bool) -> None:
        """Background, axes, title and legend in the theme's plot colours."""
        self.dark = dark
        colours = plot_colours(dark)
        plot = self.plot
        self.plot_widget.setBackground(colours.background)
        # (The axes' titles too, "latency (ms)" and "percentile", and the legend's text.)
        paint_axes(plot, colours.foreground)
        plot.titleLabel.setText(plot.titleLabel.text, color=colours.foreground)
        if plot.legend is not None:  # over the curves: on a veil of the background
            veil = QColor(colours.background)
            veil.setAlpha(210)
            plot.legend.setBrush(veil)

    def _settings_table(self, a: RunRow, b: RunRow) -> QTableWidget:
        """Both runs' settings side by side, above the figures, so two runs can be told apart
        by what they were; a row whose values differ is highlighted (and bold)."""
        names, *rest = settings_rows(a, b)
        # What tells the two apart first: the names, then the settings that differ.
        rows = [names, *(r for r in rest if r[1] != r[2]), *(r for r in rest if r[1] == r[2])]
        table = QTableWidget(len(rows), 3)
        table.setHorizontalHeaderLabels(["setting", "A", "B"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.differing: list[str] = []
        for row, (name, va, vb) in enumerate(rows):
            differs = va != vb
            if differs:
                self.differing.append(name)
            for column, text in enumerate((name, va, vb)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if differs:
                    item.setBackground(QBrush(QColor(DIFFERS_COLOUR)))
                    item.setForeground(QBrush(QColor("#1e1f22")))
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(row, column, item)
            table.setRowHeight(row, SETTING_ROW_HEIGHT)
        shown = min(len(rows), SETTING_ROWS_SHOWN)
        table.setFixedHeight(header.sizeHint().height() + SETTING_ROW_HEIGHT * shown + 4)
        return table

    def setting_cells(self) -> list[tuple[str, str, str]]:
        """The settings table as text, row by row (setting, A, B)."""
        cells = []
        for row in range(self.settings.rowCount()):
            texts = [self.settings.item(row, c) for c in range(3)]
            name, va, vb = (t.text() if t else "" for t in texts)
            cells.append((name, va, vb))
        return cells

    def verdicts(self) -> dict[str, str]:
        return {d.name: d.verdict for d in self.deltas}
