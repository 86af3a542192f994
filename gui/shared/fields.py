"""The form fields the views build again and again: number boxes, choice boxes, text boxes,
a multi-line text area with its length against a limit, and the message line that goes under a
field or in a result.

Each returns a configured Qt widget and nothing more; the caller connects its signals and lays
it out. A number box's value is set last, after its range and decimals, so it is never clamped
or rounded by a setting that comes later.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QColor, QFocusEvent, QKeyEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)


def number_box(
    low: float,
    high: float,
    value: float | None = None,
    *,
    decimals: int | None = None,
    step: float | None = None,
    suffix: str = "",
    tooltip: str = "",
) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    if decimals is not None:
        box.setDecimals(decimals)
    if step is not None:
        box.setSingleStep(step)
    if suffix:
        box.setSuffix(suffix)
    if tooltip:
        box.setToolTip(tooltip)
    if value is not None:
        box.setValue(value)
    return box


def count_box(low: int, high: int, value: int, *, suffix: str = "", tooltip: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    if suffix:
        box.setSuffix(suffix)
    if tooltip:
        box.setToolTip(tooltip)
    box.setValue(value)
    return box


def choice_box(items: Sequence[str], tooltip: str = "") -> QComboBox:
    box = QComboBox()
    box.addItems(list(items))
    if tooltip:
        box.setToolTip(tooltip)
    return box


def text_box(placeholder: str, tooltip: str = "", *, clearable: bool = False) -> QLineEdit:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    if clearable:
        edit.setClearButtonEnabled(True)
    if tooltip:
        edit.setToolTip(tooltip)
    return edit


class _FormTextEdit(QPlainTextEdit):
    """A plain text box that leaves Ctrl+Enter to its form (as a line edit does) and says
    when focus leaves it."""

    sigLeft = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        ctrl = event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if ctrl and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            event.ignore()  # up to the form, which predicts; no line break here
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self.sigLeft.emit()


class TextArea(QWidget):
    """A multi-line box for a text input of at most `max_length` characters, its count under it
    ("120 / 200 characters"), red with how many too many once past the limit.

    Text beyond the limit is kept, not cut: a pasted review loses nothing unseen, and the form's
    validation (the engine's own) refuses it with the count in view. Tab moves to the next
    field, as in the rest of the form; Ctrl+Enter is left to the form (it predicts)."""

    sigTextChanged = Signal()
    sigLeft = Signal()  # focus left the box: the form counts it as touched

    def __init__(
        self, max_length: int, placeholder: str = "", *, lines: int = 5, tooltip: str = ""
    ) -> None:
        super().__init__()
        self.max_length = max_length
        self.edit = _FormTextEdit()
        self.edit.setTabChangesFocus(True)
        self.edit.setPlaceholderText(placeholder)
        if tooltip:
            self.edit.setToolTip(tooltip)
        margins = self.edit.contentsMargins()
        frame = 2 * self.edit.frameWidth() + margins.top() + margins.bottom()
        spacing = self.edit.fontMetrics().lineSpacing()
        self.edit.setFixedHeight(
            lines * spacing + frame + 2 * int(self.edit.document().documentMargin())
        )
        self.count = MessageLabel("", wrap=False)
        self.count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.edit)
        layout.addWidget(self.count)
        self.edit.textChanged.connect(self._changed)
        self.edit.sigLeft.connect(self.sigLeft)
        self._changed()

    def text(self) -> str:
        return self.edit.toPlainText()

    def setText(self, text: str) -> None:
        self.edit.setPlainText(text)

    @property
    def too_long(self) -> int:
        """How many characters past the limit the text is (0 within it)."""
        return max(0, len(self.text()) - self.max_length)

    def _changed(self) -> None:
        # len() counts what the validation counts (code points), so the two always agree.
        used, over = len(self.text()), self.too_long
        words = f"{used:,} / {self.max_length:,} characters"
        if over:
            words += f" — {over:,} too many"
        self.count.set_message(words, error=bool(over))
        self.sigTextChanged.emit()


class MessageLabel(QLabel):
    """Text that never widens its column: a status line (wrapped) or a field's error (one
        line, always reserved, so an error appearing moves nothing; cut with "…" where the column
    ends, the whole text in its tooltip).

        An error reads in red on either theme: the red is picked against the window colour each
        time the palette changes (a theme switch), so no colour is fixed for one background."""

    def __init__(self, text: str = "", *, error: bool = False, wrap: bool = True) -> None:
        super().__init__(text)
        self._error = error
        self._wrap = wrap
        self._recolouring = False
        # Its width comes from the column, never from the length of its text.
        if wrap:
            self.setWordWrap(True)
            policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            policy.setHeightForWidth(True)
        else:
            policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            self.setFixedHeight(self.fontMetrics().height())
        self.setSizePolicy(policy)
        if wrap:  # (a one-line error is painted elided, below, so it is not selectable)
            self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._recolour()

    def setText(self, text: str) -> None:
        super().setText(text)
        if not self._wrap:
            self.setToolTip(text)  # (a line cut at the column's edge can still be read)

    @property
    def error(self) -> bool:
        return self._error

    def set_message(self, text: str, *, error: bool = False) -> None:
        if error != self._error:
            self._error = error
            self._recolour()
        self.setText(text)

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._wrap:
            super().paintEvent(event)
            return
        # One line: cut with "…" at the column's edge (`text()` keeps the whole of it).
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(
            self.text(), Qt.TextElideMode.ElideRight, rect.width()
        )
        painter = QPainter(self)
        painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
        painter.drawText(rect, int(self.alignment()), shown)
        painter.end()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and not self._recolouring:
            self._recolour()

    def _recolour(self) -> None:
        self._recolouring = True  # setting the palette sends a PaletteChange of its own
        try:
            if not self._error:
                self.setPalette(QPalette())  # inherit every role: the theme's text colour
                return
            palette = QPalette()
            dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
            palette.setColor(
                QPalette.ColorRole.WindowText, QColor(ERROR_ON_DARK if dark else ERROR)
            )
            self.setPalette(palette)
        finally:
            self._recolouring = False


ERROR = "#c0392b"  # red with enough contrast on a light window
ERROR_ON_DARK = "#ff6b68"  # and on a dark one (the dark palette's BrightText)
