"""Plot titles that fit their plots: elided to the width the plot has, whole in a tooltip.

A pyqtgraph title is a `LabelItem` whose minimum width is its text's: a title wider than its
plot (a 1024 px window holds four load plots in a row) widened the plot past its widget, so
the title and the plot's right edge were cut off. `PlotTitles` keeps each plot's full title and,
whenever the plot's widget is resized, shows as much of it as fits over the plot's data area.
"""

from __future__ import annotations

import html

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFont, QFontMetrics

TITLE_PT = 11.0  # pyqtgraph's title size (`PlotItem.titleLabel`)
SLACK_PX = 12  # the plot's right margin and the label's own padding


class PlotTitles(QObject):
    """The full titles of some plots, each shown elided to its plot's width; `LivePlotsWidget`
    and the status timeline own one."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._titles: dict[pg.PlotItem, str] = {}
        self._widgets: dict[QObject, pg.PlotItem] = {}
        self._colour = "#3c3f44"

    def add(self, widget: pg.PlotWidget, plot: pg.PlotItem, title: str) -> None:
        """`plot` (in `widget`) shows `title`, fitted now and on every resize of `widget`."""
        self._titles[plot] = title
        self._widgets[widget] = plot
        widget.installEventFilter(self)
        self.fit(plot)

    def set_title(self, plot: pg.PlotItem, title: str) -> None:
        if self._titles.get(plot) != title:
            self._titles[plot] = title
            self.fit(plot)

    def title(self, plot: pg.PlotItem) -> str:
        """The full title (the plot may show it elided)."""
        return self._titles.get(plot, "")

    def set_colour(self, colour: str) -> None:
        self._colour = colour
        for plot in self._titles:
            self.fit(plot)

    def room(self, plot: pg.PlotItem) -> int:
        """The width the title may take: over the data area, between the left axis and the
        widget's right edge."""
        widget = plot.getViewWidget()
        width = widget.width() if widget is not None else int(plot.width())
        return max(width - int(plot.getAxis("left").width()) - SLACK_PX, 0)

    def fit(self, plot: pg.PlotItem) -> None:
        full = self._titles[plot]
        font = QFont(plot.titleLabel.item.font())
        font.setPointSizeF(TITLE_PT)
        shown = QFontMetrics(font).elidedText(full, Qt.TextElideMode.ElideRight, self.room(plot))
        plot.setTitle(html.escape(shown, quote=False), color=self._colour)
        plot.titleLabel.setToolTip(full if shown != full else "")

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            plot = self._widgets.get(watched)
            if plot is not None:
                self.fit(plot)
        return False
