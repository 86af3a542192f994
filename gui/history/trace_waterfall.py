"""The Trace view's waterfall: a span tree with a painted timeline column under a time axis.

A `QTreeWidget` gives the tree its indentation, expanders, selection, keys and hover; the last
column is painted by `_BarDelegate` (one bar per span, to scale, with the axis' grid lines) and
the header of that column by `_AxisHeader` (ticks in ms), so axis and bars share one geometry
(`timeline_x`) and stay aligned when the columns are resized.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QRectF,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from gui.history.trace_tree import SpanNode, axis_ticks, ms_text, tick_label

NAME_COL, DURATION_COL, TIMELINE_COL = 0, 1, 2
PAD = 8  # px kept free at each end of the timeline column, so the first and last tick show
ROLE = Qt.ItemDataRole.UserRole
ROW_HEIGHT = 22

# Client phases in blues, the engine's stages in their own colours, the server's in greens.
STAGE_COLORS = {
    "request": "#8a8a8a",
    "queue": "#d6b656",
    "connect": "#7ea6d8",
    "tls": "#9673a6",
    "send": "#6c8ebf",
    "wait": "#a9c4e8",
    "receive": "#4f7cb5",
    "validate": "#6c8ebf",
    "metadata": "#9673a6",
    "queue_wait": "#d6b656",
    "inference": "#82b366",
    "write": "#b85450",
}
SERVER_COLOR = "#5a9e4b"


def span_color(node: SpanNode) -> QColor:
    if node.side == "server":
        return QColor(SERVER_COLOR)
    return QColor(STAGE_COLORS.get(node.name, "#888888"))


def timeline_x(us: float, total_us: int, rect: QRect | QRectF) -> float:
    """Where `us` falls in the timeline column `rect` (the axis and the bars both use this)."""
    width = max(rect.width() - 2 * PAD, 1)
    return rect.left() + PAD + width * us / max(total_us, 1)


class _AxisHeader(QHeaderView):
    """The tree's header; over the timeline column it draws the time axis' ticks."""

    def __init__(self, tree: SpanTreeView) -> None:
        super().__init__(Qt.Orientation.Horizontal, tree)
        self._tree = tree

    def paintSection(self, painter: QPainter, rect: QRect, logicalIndex: int) -> None:
        super().paintSection(painter, rect, logicalIndex)
        if logicalIndex != TIMELINE_COL or self._tree.total_us <= 0:
            return
        painter.save()
        painter.setPen(self.palette().text().color())
        metrics = painter.fontMetrics()
        for x, label in self._tree.tick_positions(rect):
            painter.drawLine(int(x), rect.bottom() - 4, int(x), rect.bottom())
            w = metrics.horizontalAdvance(label)
            left = min(max(x - w / 2, rect.left() + 1), rect.right() - w - 1)
            painter.drawText(
                QRectF(left, rect.top(), w + 2, rect.height() - 4),
                Qt.AlignmentFlag.AlignVCenter,
                label,
            )
        painter.restore()


class _BarDelegate(QStyledItemDelegate):
    """Paints a span's bar in the timeline column, over the axis' faint grid lines."""

    def __init__(self, tree: SpanTreeView) -> None:
        super().__init__(tree)
        self._tree = tree

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        super().paint(painter, option, index)  # selection and hover backgrounds
        node = index.data(ROLE)
        if not isinstance(node, SpanNode):
            return
        rect: QRect = option.rect
        painter.save()
        grid = QColor(option.palette.text().color())
        grid.setAlpha(40)
        painter.setPen(QPen(grid, 1))
        for x, _label in self._tree.tick_positions(rect):
            painter.drawLine(int(x), rect.top(), int(x), rect.bottom())
        painter.fillRect(self._tree.bar_rect(node, rect), span_color(node))
        painter.restore()

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(hint.width(), max(hint.height(), ROW_HEIGHT))  # room for a readable bar


class SpanTreeView(QTreeWidget):
    """The spans of one request as a tree: name, duration and a bar to scale under a time axis.

    Emits `sigSpanShown` with the span under the mouse (hover) or, when the mouse leaves, the
    selected one, so the details pane follows what the user points at."""

    sigSpanShown = Signal(object)  # SpanNode | None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.total_us = 0
        self.root: SpanNode | None = None
        self.setHeader(_AxisHeader(self))
        self.setColumnCount(3)
        self.setHeaderLabels(["Span", "Duration", ""])
        self.setItemDelegateForColumn(TIMELINE_COL, _BarDelegate(self))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformRowHeights(True)
        self.setMouseTracking(True)  # hover shows a span's attributes
        self.setAllColumnsShowFocus(True)
        header = self.header()
        header.setStretchLastSection(True)
        header.setSectionsMovable(False)
        header.setMinimumHeight(26)
        self.setColumnWidth(NAME_COL, 160)
        self.setColumnWidth(DURATION_COL, 80)
        self._hovering = False  # a hovered span, not the selected one, is being shown
        self.itemEntered.connect(self._show_hovered)
        self.itemSelectionChanged.connect(self._show_selected)

    def set_root(self, root: SpanNode | None) -> None:
        """Show `root`'s tree, every level expanded, with the root selected."""
        self.clear()
        self.root = root
        self.total_us = root.duration_us if root is not None else 0
        if root is None:
            self.header().viewport().update()
            return
        top = self._add(root, None)
        self.expandAll()
        self.setCurrentItem(top)
        self.header().viewport().update()

    def _add(self, node: SpanNode, parent: QTreeWidgetItem | None) -> QTreeWidgetItem:
        item = QTreeWidgetItem([node.name, ms_text(node.duration_us), ""])
        item.setData(NAME_COL, ROLE, node)
        item.setData(TIMELINE_COL, ROLE, node)
        item.setTextAlignment(
            DURATION_COL, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        )
        item.setToolTip(NAME_COL, f"{node.name}: {ms_text(node.duration_us)}")
        if parent is None:
            self.addTopLevelItem(item)
        else:
            parent.addChild(item)
        for child in node.children:
            self._add(child, item)
        return item

    def items(self) -> list[QTreeWidgetItem]:
        """Every row, depth first (as shown when expanded)."""
        found: list[QTreeWidgetItem] = []

        def visit(item: QTreeWidgetItem | None) -> None:
            if item is None:
                return
            found.append(item)
            for i in range(item.childCount()):
                visit(item.child(i))

        for i in range(self.topLevelItemCount()):
            visit(self.topLevelItem(i))
        return found

    def item_named(self, name: str) -> QTreeWidgetItem | None:
        return next((it for it in self.items() if it.text(NAME_COL) == name), None)

    def timeline_rect(self) -> QRect:
        """The timeline column's extent in the viewport (one row high, at the top)."""
        header = self.header()
        return QRect(
            header.sectionViewportPosition(TIMELINE_COL),
            0,
            header.sectionSize(TIMELINE_COL),
            1,
        )

    def tick_positions(self, rect: QRect | QRectF | None = None) -> list[tuple[float, str]]:
        """The axis' ticks: (x in `rect`'s coordinates, label), `rect` being the timeline
        column (the viewport's by default)."""
        area = rect if rect is not None else self.timeline_rect()
        # About one tick per 70 px keeps the labels apart.
        most = max(int((area.width() - 2 * PAD) / 70), 1)
        return [
            (timeline_x(t, self.total_us, area), tick_label(t))
            for t in axis_ticks(self.total_us, most)
        ]

    def bar_rect(self, node: SpanNode, rect: QRect | QRectF | None = None) -> QRectF:
        """Where `node`'s bar is drawn in its row's timeline cell `rect`."""
        area = rect if rect is not None else self.timeline_rect()
        left = timeline_x(node.start_us, self.total_us, area)
        right = timeline_x(node.end_us, self.total_us, area)
        top = area.top() + 4 if area.height() > 8 else area.top()
        return QRectF(left, top, max(right - left, 2.0), max(area.height() - 8, 1))

    def _show_hovered(self, item: QTreeWidgetItem, _column: int) -> None:
        self._hovering = True
        self.sigSpanShown.emit(item.data(NAME_COL, ROLE))

    def _show_selected(self) -> None:
        self._hovering = False
        items = self.selectedItems()
        self.sigSpanShown.emit(items[0].data(NAME_COL, ROLE) if items else None)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        if self.itemAt(event.position().toPoint()) is None and self._hovering:
            self._show_selected()  # off the rows: back to the selected span

    def viewportEvent(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Leave:
            self._show_selected()  # hover ends: back to the selected span
        return super().viewportEvent(event)
