"""Predict by form: fields generated from the model's input schema, filled from the model's own
example, inline errors from the same pydantic validation the engine runs (shown once a field was
touched, or on Predict), and a result panel with stage times and the answer as its task gives it:
a classifier's label and class scores, a regression's named values with their units.

A text input gets a multi-line box with its length against the model's limit; a text over it is
refused by the form with the count in view. Switching models (or a reload swapping them, see
`set_models`) builds the form anew for the chosen model's inputs.

The two columns split the width evenly whatever they hold: every text that can grow (a message,
an error, a stage line) wraps inside its column instead of widening it, so the layout never
moves between predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QKeyEvent, QKeySequence, QPalette, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from engine.ingest.images import ImageError, image_pixels
from engine.models.examples import model_example
from engine.models.manifest import OutputSpec
from engine.models.runtime import LoadedModel
from engine.work import Work
from gui.shared.fields import MessageLabel, TextArea
from gui.shared.file_dialogs import file_dialog
from storage.database import LiveDatabaseError, refuse_live_database

if TYPE_CHECKING:  # (importing it would load the HTTP client before the window shows)
    from engine.remote.oip_form import RemoteForm

COLUMN_MIN_WIDTH = 220  # each column's floor; above it the two share the width evenly
CHOOSE_IMAGE = "Choose image…"


class _Field:
    """One input: its editor, its error line, how to read its value, and whether the user has
    touched it (edited it or left it) so its error may show; `PredictView` builds them."""

    def __init__(self, editor: QWidget, error: MessageLabel, read: Callable[[], Any]) -> None:
        self.editor = editor
        self.error = error
        self.read = read
        self.touched = False


def _wrapping(label: QLabel) -> QLabel:
    """`label` wraps within its column and never asks for more width (see the module)."""
    label.setWordWrap(True)
    policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    policy.setHeightForWidth(True)
    label.setSizePolicy(policy)
    return label


class PredictView(QWidget):
    """The Predict tab: a form per model and its result; `gui.app` answers its `sigPredict`."""

    sigPredict = Signal(str, dict)  # model name, input payload (already valid)
    sigPredictRemote = Signal(dict)  # input payload for `remote_form`'s target (already valid)

    def __init__(self, models: list[LoadedModel], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models = {m.name: m for m in models}
        self._examples: dict[str, dict[str, Any]] = {}  # per local model, read once
        self._fields: dict[str, _Field] = {}
        self._image_pixels: dict[str, list[float]] = {}
        self._image_errors: dict[str, str] = {}  # a picked file that is not an image
        self._show_all_errors = False  # set by Predict: every field's problem shows
        self._filling = False  # the form is being filled by the view, not typed in
        self._running = False
        self.remote_form: RemoteForm | None = (
            None  # a remote target's form (gui.predict.remote_predict)
        )

        self.model_box = QComboBox()
        self.model_box.addItems(_form_order(models))
        self.model_box.setToolTip("The model to run")
        self.model_box.currentTextChanged.connect(self._model_chosen)
        self.form_box = QGroupBox("Inputs")
        form_outer = QVBoxLayout(self.form_box)
        self.form_note = _wrapping(QLabel(""))  # what a target without a form takes
        self.form_note.setVisible(False)
        self.form = QFormLayout()
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        self.example_button = QPushButton("Example")
        self.example_button.setToolTip("Fill the form with the model's own example")
        self.example_button.clicked.connect(self.fill_example)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Empty every field")
        self.clear_button.clicked.connect(self.clear)
        form_buttons = QHBoxLayout()
        form_buttons.addWidget(self.example_button)
        form_buttons.addWidget(self.clear_button)
        form_buttons.addStretch(1)
        form_outer.addWidget(self.form_note)
        form_outer.addLayout(self.form)
        form_outer.addLayout(form_buttons)
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("Run the model on these inputs (Ctrl+Enter)")
        self.predict_button.clicked.connect(self.submit)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(self.submit)

        self.result_box = QGroupBox("Result")
        result_layout = QVBoxLayout(self.result_box)
        # The heading is only ever a result (a label); messages go to `status_text`. Its size
        # comes from its font and its colour from the palette's text role, so it follows the
        # theme (a style sheet here once drew it black on the dark theme's grey).
        self.label_text = _wrapping(QLabel(""))
        heading = QFont(self.label_text.font())
        heading.setPointSizeF(heading.pointSizeF() * 1.6)
        heading.setWeight(QFont.Weight.DemiBold)
        self.label_text.setFont(heading)
        self.label_text.setForegroundRole(QPalette.ColorRole.WindowText)
        # Its line is kept while it is empty (a message, no result): the rest does not move up.
        self.label_text.setMinimumHeight(self.label_text.fontMetrics().height())
        self.status_text = MessageLabel("")
        self.request_text = _wrapping(QLabel(""))
        self.request_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stages_text = _wrapping(QLabel(""))
        self.scores_layout = QFormLayout()
        result_layout.addWidget(self.label_text)
        result_layout.addWidget(self.status_text)
        result_layout.addLayout(self.scores_layout)
        result_layout.addWidget(self.stages_text)
        result_layout.addWidget(self.request_text)
        result_layout.addStretch(1)

        top = QHBoxLayout()
        self.model_label = QLabel("Model")
        top.addWidget(self.model_label)
        top.addWidget(self.model_box, 1)
        self.top_bar = top
        self.form_column = QWidget()
        left = QVBoxLayout(self.form_column)
        left.setContentsMargins(0, 0, 0, 0)
        left.addLayout(top)
        left.addWidget(self.form_box)
        left.addWidget(self.predict_button)
        left.addStretch(1)
        # Both columns ignore their contents' width hints and split the width 1:1 above a
        # floor, so no text they show can move the layout.
        for column in (self.form_column, self.result_box):
            column.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            column.setMinimumWidth(COLUMN_MIN_WIDTH)
        layout = QHBoxLayout(self)
        layout.addWidget(self.form_column, 1)
        layout.addWidget(self.result_box, 1)
        self._build_form(self.model_box.currentText())

    @property
    def model(self) -> LoadedModel:
        return self._models[self.model_box.currentText()]

    def model_names(self) -> list[str]:
        """The local models offered, in the box's order."""
        return [self.model_box.itemText(i) for i in range(self.model_box.count())]

    def set_models(self, models: list[LoadedModel]) -> None:
        """Offer another set of local models (a reload). The chosen model stays chosen if it is
        still there; its form is kept as typed when its inputs are unchanged, else built anew
        (and so is the form of a model that went: the first one's is shown)."""
        current = self.model_box.currentText()
        before = self._models.get(current)
        self._models = {m.name: m for m in models}
        self._examples.clear()  # a model replaced under the same name may ship another example
        after = self._models.get(current)
        self.model_box.blockSignals(True)  # refilling the box is not the user choosing
        try:
            self.model_box.clear()
            self.model_box.addItems(_form_order(models))
            if after is not None:
                self.model_box.setCurrentText(current)
        finally:
            self.model_box.blockSignals(False)
        same_inputs = (
            before is not None
            and after is not None
            and before.manifest.inputs == after.manifest.inputs
            and before.manifest.task == after.manifest.task
        )
        if self.remote_form is None and not same_inputs:
            self.clear_result()
            self._build_form(self.model_box.currentText())

    # -- the form ---------------------------------------------------------------------------

    def _model_chosen(self, name: str) -> None:
        # Another model's answer under this one's form would be read as this one's.
        if not self._running:
            self.clear_result()
        self._build_form(name)

    def _build_form(self, name: str) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self._fields.clear()
        self._image_pixels.clear()
        self._image_errors.clear()
        self._show_all_errors = False
        model, form = self._models.get(name), self.remote_form
        if form is not None:
            specs: Sequence[Any] = form.fields
            schema = form.inputs.model_json_schema()
        elif model is not None:
            specs, schema = model.manifest.inputs, model.inputs.model_json_schema()
        else:
            return
        note = form.note if form is not None else ""
        self.form_note.setText(note)
        self.form_note.setVisible(bool(note))
        for spec in specs:
            prop = schema["properties"][spec.name]
            error = MessageLabel("", error=True, wrap=False)
            editor, read = self._editor(spec.name, spec.type, prop, spec.choices)
            tip = prop.get("description") or spec.name
            if "minimum" in prop and "maximum" in prop:
                tip += f" ({prop['minimum']:g} to {prop['maximum']:g})"
            editor.setToolTip(tip)
            if isinstance(editor, QLineEdit) and spec.type == "text" and spec.description:
                editor.setPlaceholderText(spec.description)  # what a list field takes
            if isinstance(editor, TextArea):
                editor.edit.setToolTip(tip)
            title = spec.name.replace("_", " ")
            unit = getattr(spec, "unit", None)  # a manifest's field has one; a remote's not
            self.form.addRow(f"{title} ({unit})" if unit else title, editor)
            self.form.addRow("", error)
            self._fields[spec.name] = _Field(editor, error, read)
        self.fill_example()

    def _editor(
        self, name: str, kind: str, prop: dict[str, Any], choices: list[str] | None
    ) -> tuple[QWidget, Callable[[], Any]]:
        if kind == "enum" and choices:
            box = QComboBox()
            box.addItems(choices)
            box.currentTextChanged.connect(lambda _text: self._edited(name))
            return box, box.currentText
        if kind == "image":
            button = QPushButton(CHOOSE_IMAGE)
            button.clicked.connect(lambda: self._choose_image(name, button))
            return button, lambda: self._image_pixels.get(name)
        if kind == "text" and prop.get("type") == "string" and "maxLength" in prop:
            # A model's text input (a manifest's `text` field, local or on an inferdeck
            # target): many lines, with its limit in view. A remote list of numbers, also
            # typed as text, has no length limit and keeps its one-line box.
            hint = prop.get("description") or "Type or paste the text"
            area = TextArea(int(prop["maxLength"]), hint)
            area.sigTextChanged.connect(lambda: self._edited(name))
            area.sigLeft.connect(lambda: self._edited(name))

            def read_text() -> Any:
                body = area.text()
                return body if body.strip() else None

            return area, read_text
        if kind == "json":
            text = QPlainTextEdit()
            text.setPlaceholderText('{"field": 1.0}')
            text.textChanged.connect(lambda: self._edited(name))

            def read_json() -> Any:
                body = text.toPlainText().strip()
                return body if body else None

            return text, read_json
        edit = QLineEdit()
        low, high = prop.get("minimum"), prop.get("maximum")
        if low is not None and high is not None:
            edit.setPlaceholderText(f"{low:g} – {high:g}")
        edit.textChanged.connect(lambda _text: self._edited(name))
        # Leaving the field counts as touching it, even unchanged (an empty required field).
        edit.editingFinished.connect(lambda: self._edited(name))

        def read() -> Any:
            text = edit.text().strip()
            return text if text else None

        return edit, read

    def _edited(self, name: str) -> None:
        field = self._fields.get(name)
        if field is not None and not self._filling:
            field.touched = True
        self.validate()

    def _choose_image(self, name: str, button: QPushButton) -> None:
        dialog = file_dialog(self, "Choose an image")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilter("Images (*.png *.jpg *.jpeg *.bmp *.gif *.webp)")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def chosen(path: str) -> None:
            self.set_image(name, Path(path))
            button.setText(Path(path).name)

        dialog.fileSelected.connect(chosen)
        dialog.open()  # never exec(): it would re-enter the qasync loop

    def set_image(self, name: str, path: Path) -> None:
        pre = self.model.manifest.preprocessing.image
        if pre is None:
            return
        if name in self._fields:
            self._fields[name].touched = True
        try:
            # Never opened if it is the live database (see storage.database).
            refuse_live_database(path, "an image")
        except LiveDatabaseError as exc:
            self._image_pixels.pop(name, None)
            self._image_errors[name] = str(exc)
            self.validate()
            return
        try:
            self._image_pixels[name] = image_pixels(path, pre)
            self._image_errors.pop(name, None)
        except ImageError as exc:
            self._image_pixels.pop(name, None)
            self._image_errors[name] = str(exc)
        self.validate()

    def example(self) -> dict[str, Any]:
        """What the form starts from: the remote form's example, or the local model's own
        (its first held-out row; `engine.models.examples`)."""
        if self.remote_form is not None:
            return dict(self.remote_form.example)
        model = self._models.get(self.model_box.currentText())
        if model is None:
            return {}
        if model.name not in self._examples:
            self._examples[model.name] = model_example(model.manifest, model.folder)
        return self._examples[model.name]

    def fill_example(self) -> None:
        """Fill every field from `example()`; nothing counts as touched, so no error shows."""
        self._fill(self.example())

    def clear(self) -> None:
        """Empty every field; errors wait until a field is touched or Predict is pressed."""
        self._fill({})

    def _fill(self, values: dict[str, Any]) -> None:
        self._filling = True
        try:
            for name, field in self._fields.items():
                field.touched = False
                self._put(name, field.editor, values.get(name))
        finally:
            self._filling = False
        self._show_all_errors = False
        self.validate()

    def _put(self, name: str, editor: QWidget, value: Any) -> None:
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(editor, QLineEdit | TextArea):
            editor.setText("" if value is None else str(value))
        elif isinstance(editor, QPlainTextEdit):
            editor.setPlainText("" if value is None else str(value))
        elif isinstance(editor, QComboBox):
            if value is not None:
                editor.setCurrentText(str(value))
        elif isinstance(editor, QPushButton):  # an image: pixels, not a file
            self._image_errors.pop(name, None)
            if isinstance(value, list) and value:
                self._image_pixels[name] = [float(v) for v in value]
                editor.setText("Example image (held-out row)")
            else:
                self._image_pixels.pop(name, None)
                editor.setText(CHOOSE_IMAGE)

    def set_values(self, values: dict[str, Any]) -> None:
        """Put `values` into their fields as if typed: they count as touched."""
        for name, value in values.items():
            field = self._fields[name]
            field.touched = True
            self._put(name, field.editor, value)
        self.validate()

    def payload(self) -> dict[str, Any]:
        return {
            name: value
            for name, field in self._fields.items()
            if (value := field.read()) is not None
        }

    def validate(self) -> BaseModel | None:
        """Validate the form as the engine will; show each touched field's first problem under
        it (every field's, once Predict was pressed). The result says if the form is valid."""
        problems = dict(self._image_errors)
        checked: BaseModel | None = None
        inputs = self.remote_form.inputs if self.remote_form else self._local_inputs()
        if inputs is not None:
            try:
                checked = inputs.model_validate(self.payload())
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    name = str(err["loc"][0]) if err["loc"] else ""
                    if name in self._fields and name not in problems:
                        problems[name] = field_message(err)
        for name, field in self._fields.items():
            shown = field.touched or self._show_all_errors
            field.error.set_message(problems.get(name, "") if shown else "", error=True)
        return None if problems else checked

    def _local_inputs(self) -> type[BaseModel] | None:
        model = self._models.get(self.model_box.currentText())
        return model.inputs if model is not None else None

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Ctrl+Enter typed in a field: the field ignores it and it arrives here. (The shortcut
        # covers the rest of the window; both end in `submit`.)
        ctrl = event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if ctrl and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submit()
            return
        super().keyPressEvent(event)

    def submit(self) -> None:
        if self._running:
            return
        self._show_all_errors = True
        if self.validate() is None:
            self.status_text.set_message("Check the fields marked in red.", error=True)
            return
        self._running = True
        self.predict_button.setEnabled(False)
        self.status_text.set_message("running…")
        if self.remote_form is not None:
            self.sigPredictRemote.emit(self.payload())
        else:
            self.sigPredict.emit(self.model.name, self.payload())

    def use_form(self, form: RemoteForm | None) -> None:
        """Build the form from a remote model's inputs; None goes back to the local model."""
        self.remote_form = form
        self.model_box.setEnabled(form is None)
        # A remote form is for the target's model: the local choice is hidden, the box says whose.
        self.model_label.setVisible(form is None)
        self.model_box.setVisible(form is None)
        where = f"{form.model} on {form.target}" if form is not None and form.model else ""
        self.form_box.setTitle(f"Inputs — {where}" if where else "Inputs")
        self._build_form(self.model_box.currentText())

    # -- the result -------------------------------------------------------------------------

    def _done(self) -> None:
        self._running = False
        self.predict_button.setEnabled(True)

    def clear_result(self) -> None:
        """No result: the heading, scores, stage and request lines and the message emptied."""
        self.label_text.setText("")
        self.status_text.set_message("")
        while self.scores_layout.rowCount():
            self.scores_layout.removeRow(0)
        self.stages_text.setText("")
        self.request_text.setText("")

    def show_message(self, text: str, *, error: bool = False) -> None:
        """A sentence in the Result box's status line, never as the heading; the previous
        result goes, so a message is never read as being about it."""
        self._done()
        self.clear_result()
        self.status_text.set_message(text, error=error)

    def show_answer(
        self,
        label: str,
        scores: Sequence[tuple[str, float]],
        rows: Sequence[tuple[str, str]] = (),
        *,
        stages: str = "",
        request: str = "",
    ) -> None:
        """A result: the top label as heading, a bar per class (highest first), then any other
        outputs as text rows, the stage times and the request it was stored as."""
        self._done()
        self.clear_result()
        self.label_text.setText(label)
        for name, score in sorted(scores, key=lambda kv: -kv[1]):
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(round(max(0.0, min(1.0, score)) * 1000))
            bar.setFormat(f"{score:.1%}")
            self.scores_layout.addRow(name, bar)
        for name, text in rows:
            self.scores_layout.addRow(name, _wrapping(QLabel(text)))
        self.stages_text.setText(stages)
        self.request_text.setText(request)

    def show_values(
        self, values: Sequence[tuple[str, str]], *, stages: str = "", request: str = ""
    ) -> None:
        """A regression's result: each named value with its unit on a row of its own (the
        first one also as the heading, as a classifier's top label is), then the stage times
        and the request it was stored as."""
        self._done()
        self.clear_result()
        self.label_text.setText(values[0][1] if values else "")
        strong = QFont(self.font())
        strong.setWeight(QFont.Weight.DemiBold)
        for name, text in values:
            value = _wrapping(QLabel(text))
            value.setFont(strong)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.scores_layout.addRow(name, value)
        self.stages_text.setText(stages)
        self.request_text.setText(request)

    def result_rows(self) -> dict[str, str]:
        """The result's rows as they read: a class and its score ("97.0%"), an output and its
        value with its unit ("212 °F"), or another output and its text."""
        rows: dict[str, str] = {}
        layout = self.scores_layout
        for i in range(layout.rowCount()):
            name = layout.itemAt(i, QFormLayout.ItemRole.LabelRole)
            shown = layout.itemAt(i, QFormLayout.ItemRole.FieldRole)
            label = name.widget() if name is not None else None
            field = shown.widget() if shown is not None else None
            if isinstance(label, QLabel) and isinstance(field, QLabel | QProgressBar):
                rows[label.text()] = field.text()
        return rows

    def show_result(self, work: Work) -> None:
        if work.status != "ok" or work.output is None:
            message = work.error.message if work.error else work.status
            self.show_message(f"{work.status}: {message}", error=True)
            return
        stages = stage_line(work.latency_us, work.spans)
        request = f"request {work.request_id}"
        if "values" in work.output:  # a regression: {"values": {output name: number}}
            outputs = work.model.manifest.outputs if work.model is not None else []
            self.show_values(
                named_values(work.output["values"], outputs), stages=stages, request=request
            )
            return
        self.show_answer(
            str(work.output["label"]),
            list(work.output["scores"].items()),
            stages=stages,
            request=request,
        )


def _form_order(models: Sequence[LoadedModel]) -> list[str]:
    """The model box's order: tabular and text models first (the form is their natural home;
    images mostly come by file), by name within each."""
    return [
        m.name for m in sorted(models, key=lambda m: (m.manifest.image_field is not None, m.name))
    ]


def value_text(value: float, unit: str | None) -> str:
    """A regression output as read: "212 °F", "373.15 K" (six significant digits; a float32
    answer has no more to give)."""
    number = f"{value:.6g}"
    if number == "-0":
        number = "0"
    return f"{number} {unit}" if unit else number


def named_values(values: dict[str, Any], outputs: Sequence[OutputSpec]) -> list[tuple[str, str]]:
    """A regression's answer as (name, "value unit") rows, in the manifest's order."""
    units = {out.name: out.unit for out in outputs}
    order = [out.name for out in outputs if out.name in values]
    order += [name for name in values if name not in units]
    return [(name, value_text(float(values[name]), units.get(name))) for name in order]


def field_message(err: Any) -> str:
    """A validation error as a short sentence under its field (it has one line): pydantic's
    common ones said briefly, the rest as pydantic words them."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type"):
        return "enter a number" if kind.startswith("float") else "enter a whole number"
    bounds = {
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
    }
    if kind in bounds and isinstance(ctx.get(bounds[kind][1]), int | float):
        words, key = bounds[kind]
        return f"{words} {ctx[key]:g}"
    if kind == "string_too_long" and isinstance(ctx.get("max_length"), int):
        have = err.get("input")
        length = f" (it has {len(have):,})" if isinstance(have, str) else ""
        return f"too long: at most {ctx['max_length']:,} characters{length}"
    return str(err["msg"]).removeprefix("Value error, ")


def stage_line(latency_us: int, spans: Sequence[Sequence[Any]]) -> str:
    """ "1.23 ms — validate 0.04  inference 0.30 … (ms)": the total and each stage's time."""
    stages = "  ".join(f"{s[0]} {s[2] / 1000:.2f}" for s in spans)
    return f"{latency_us / 1000:.2f} ms — {stages} (ms)"
