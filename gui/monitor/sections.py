"""A titled, collapsible group of plots on the Monitor's page (local engine, remote load, targets).

The Monitor orders its sections by what is active (`MonitorView._arrange`) and folds the
local engine's when it sits idle under a running load; the header stays, so one click opens it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QSizePolicy, QToolButton, QVBoxLayout, QWidget


class Section(QWidget):
    """A header button over one body widget; `MonitorView` lays them out in order."""

    def __init__(self, role: str, title: str, body: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.title = title
        self.body = body
        self.header = QToolButton()
        self.header.setCheckable(True)
        self.header.setChecked(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setArrowType(Qt.ArrowType.DownArrow)
        self.header.setAutoRaise(True)
        self.header.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.header.toggled.connect(self._on_toggled)
        self.note = ""
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.header)
        layout.addWidget(body)
        self._label()

    @property
    def collapsed(self) -> bool:
        return not self.header.isChecked()

    def set_collapsed(self, collapsed: bool) -> None:
        self.header.setChecked(not collapsed)

    def set_note(self, note: str) -> None:
        if note != self.note:
            self.note = note
            self._label()

    def _on_toggled(self, shown: bool) -> None:
        self.body.setVisible(shown)
        self.header.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self._label()

    def _label(self) -> None:
        hint = "" if self.header.isChecked() else " (click to show)"
        note = f" — {self.note}" if self.note else ""
        self.header.setText(f"{self.title}{note}{hint}")
