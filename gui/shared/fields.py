"""The form fields the views build again and again: number boxes, choice boxes, text boxes.

Each returns a configured Qt widget and nothing more; the caller connects its signals and lays
it out. A number box's value is set last, after its range and decimals, so it is never clamped
or rounded by a setting that comes later.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox


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
