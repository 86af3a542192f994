"""The Trace view: one request's stages as a waterfall drawn to scale, its input and output,
copy as JSON, and run again."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

STAGE_COLORS = {
    "validate": "#6c8ebf",
    "metadata": "#9673a6",
    "queue_wait": "#d6b656",
    "inference": "#82b366",
    "write": "#b85450",
}
ROW_HEIGHT = 26
LABEL_WIDTH = 110


def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class WaterfallWidget(QWidget):
    """One bar per span, placed by its start and sized by its duration; `TraceView` owns it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spans: list[tuple[str, int, int]] = []
        self.total_us = 1
        self.setMinimumHeight(ROW_HEIGHT * 6)

    def set_spans(self, spans: list[list[Any]] | list[tuple[Any, ...]]) -> None:
        self.spans = [(str(s[0]), int(s[1]), int(s[2])) for s in spans]
        self.total_us = max((start + dur for _, start, dur in self.spans), default=1) or 1
        self.setMinimumHeight(ROW_HEIGHT * (len(self.spans) + 1))
        self.update()

    def bar_rects(self) -> list[QRectF]:
        """Where each span's bar is drawn (also what the tests check)."""
        width = max(self.width() - LABEL_WIDTH - 90, 10)
        return [
            QRectF(
                LABEL_WIDTH + width * start / self.total_us,
                i * ROW_HEIGHT + 4,
                max(width * dur / self.total_us, 2),
                ROW_HEIGHT - 8,
            )
            for i, (_, start, dur) in enumerate(self.spans)
        ]

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        text_color = self.palette().text().color()
        for (name, _start, dur), rect in zip(self.spans, self.bar_rects(), strict=True):
            painter.setPen(text_color)
            painter.drawText(
                QRectF(4, rect.top(), LABEL_WIDTH - 8, rect.height()),
                Qt.AlignmentFlag.AlignVCenter,
                name,
            )
            painter.fillRect(rect, QColor(STAGE_COLORS.get(name, "#888888")))
            painter.drawText(
                QRectF(rect.right() + 6, rect.top(), 90, rect.height()),
                Qt.AlignmentFlag.AlignVCenter,
                f"{dur / 1000:.3f} ms",
            )
        painter.end()


class TraceView(QWidget):
    """The Trace tab: a request's waterfall, input and output; `MainWindow.open_trace` fills it."""

    sigRerun = Signal(str, dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row: dict[str, Any] | None = None
        self.title = QLabel("Select a request in Requests (Enter opens it here).")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.waterfall = WaterfallWidget()
        self.input_text = QPlainTextEdit()
        self.input_text.setReadOnly(True)
        self.output_text = QPlainTextEdit()
        self.output_text.setReadOnly(True)
        self.copy_button = QPushButton("Copy as JSON")
        self.copy_button.setToolTip("The whole request, spans included, to the clipboard")
        self.copy_button.clicked.connect(self.copy_json)
        self.rerun_button = QPushButton("Run again")
        self.rerun_button.clicked.connect(self.rerun)
        buttons = QHBoxLayout()
        buttons.addWidget(self.title, 1)
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.rerun_button)
        texts = QSplitter()
        texts.addWidget(self.input_text)
        texts.addWidget(self.output_text)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.waterfall)
        layout.addWidget(texts, 1)

    def show_request(self, row: dict[str, Any]) -> None:
        self.row = row
        latency = row.get("latency_us")
        took = "" if latency is None else f" · {latency / 1000:.2f} ms"
        self.title.setText(
            f"{row['request_id']} · {row['status']} · {row.get('model') or '—'}{took}"
        )
        self.waterfall.set_spans(_decoded(row.get("spans")) or [])
        self.input_text.setPlainText(json.dumps(_decoded(row.get("input")), indent=2))
        result = _decoded(row.get("output")) or _decoded(row.get("error"))
        self.output_text.setPlainText(json.dumps(result, indent=2))

    def as_json(self) -> str:
        if self.row is None:
            return "{}"
        keys = (
            "request_id",
            "status",
            "model",
            "client_id",
            "source",
            "created_us",
            "latency_us",
            "input",
            "output",
            "error",
            "spans",
        )
        return json.dumps({k: _decoded(self.row.get(k)) for k in keys}, indent=2)

    def copy_json(self) -> None:
        QGuiApplication.clipboard().setText(self.as_json())

    def rerun(self) -> None:
        if self.row is None or not self.row.get("model"):
            return
        values = _decoded(self.row.get("input"))
        if isinstance(values, dict):
            self.sigRerun.emit(self.row["model"], values)
