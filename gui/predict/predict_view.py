"""Predict by form: fields generated from the model's input schema, inline errors from the same
pydantic validation the engine runs, and a result panel with class scores and stage times."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.ingest.images import ImageError, image_pixels
from engine.models.runtime import LoadedModel
from engine.work import Work
from gui.shared.file_dialogs import file_dialog
from storage.database import LiveDatabaseError, refuse_live_database

if TYPE_CHECKING:  # (importing it would load the HTTP client before the window shows)
    from engine.remote.oip_form import RemoteForm


class _Field:
    """One input: its editor, its error label, how to read its value; `PredictView` builds them."""

    def __init__(self, editor: QWidget, error: QLabel, read: Callable[[], Any]) -> None:
        self.editor = editor
        self.error = error
        self.read = read


class PredictView(QWidget):
    """The Predict tab: a form per model and its result; `gui.app` answers its `sigPredict`."""

    sigPredict = Signal(str, dict)  # model name, input payload (already valid)
    sigPredictRemote = Signal(dict)  # input payload for `remote_form`'s target (already valid)

    def __init__(self, models: list[LoadedModel], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models = {m.name: m for m in models}
        self._fields: dict[str, _Field] = {}
        self._image_pixels: dict[str, list[float]] = {}
        self._image_errors: dict[str, str] = {}  # a picked file that is not an image
        self.remote_form: RemoteForm | None = (
            None  # a remote target's form (gui.predict.remote_predict)
        )

        self.model_box = QComboBox()
        # Tabular models first: the form is their natural home; images mostly come by file.
        order = sorted(models, key=lambda m: (m.manifest.image_field is not None, m.name))
        self.model_box.addItems([m.name for m in order])
        self.model_box.setToolTip("The model to run")
        self.model_box.currentTextChanged.connect(self._build_form)
        self.form_box = QGroupBox("Inputs")
        self.form = QFormLayout(self.form_box)
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("Run the model on these inputs (Ctrl+Enter)")
        self.predict_button.clicked.connect(self.submit)
        for keys in ("Ctrl+Return", "Ctrl+Enter"):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.activated.connect(self.submit)

        self.result_box = QGroupBox("Result")
        result_layout = QVBoxLayout(self.result_box)
        self.label_text = QLabel("—")
        self.label_text.setStyleSheet("font-size: 20px; font-weight: 600;")
        self.request_text = QLabel("")
        self.request_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stages_text = QLabel("")
        self.scores_layout = QFormLayout()
        result_layout.addWidget(self.label_text)
        result_layout.addLayout(self.scores_layout)
        result_layout.addWidget(self.stages_text)
        result_layout.addWidget(self.request_text)
        result_layout.addStretch(1)

        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_box, 1)
        self.top_bar = top
        left = QVBoxLayout()
        left.addLayout(top)
        left.addWidget(self.form_box)
        left.addWidget(self.predict_button)
        left.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addWidget(self.result_box, 1)
        self._build_form(self.model_box.currentText())

    @property
    def model(self) -> LoadedModel:
        return self._models[self.model_box.currentText()]

    # -- the form ---------------------------------------------------------------------------

    def _build_form(self, name: str) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self._fields.clear()
        self._image_pixels.clear()
        self._image_errors.clear()
        model, form = self._models.get(name), self.remote_form
        if form is not None:
            specs: list[Any] = form.fields
            schema = form.inputs.model_json_schema()
        elif model is not None:
            specs, schema = model.manifest.inputs, model.inputs.model_json_schema()
        else:
            return
        for spec in specs:
            prop = schema["properties"][spec.name]
            error = QLabel("")
            error.setStyleSheet("color: #d9534f;")
            editor, read = self._editor(spec.name, spec.type, prop, spec.choices)
            tip = prop.get("description") or spec.name
            if "minimum" in prop and "maximum" in prop:
                tip += f" ({prop['minimum']:g} to {prop['maximum']:g})"
            editor.setToolTip(tip)
            self.form.addRow(spec.name.replace("_", " "), editor)
            self.form.addRow("", error)
            self._fields[spec.name] = _Field(editor, error, read)
        self.validate()

    def _editor(
        self, name: str, kind: str, prop: dict[str, Any], choices: list[str] | None
    ) -> tuple[QWidget, Callable[[], Any]]:
        if kind == "enum" and choices:
            box = QComboBox()
            box.addItems(choices)
            box.currentTextChanged.connect(self.validate)
            return box, box.currentText
        if kind == "image":
            button = QPushButton("Choose image…")
            button.clicked.connect(lambda: self._choose_image(name, button))
            return button, lambda: self._image_pixels.get(name)
        edit = QLineEdit()
        low, high = prop.get("minimum"), prop.get("maximum")
        if low is not None and high is not None:
            edit.setPlaceholderText(f"{low:g} – {high:g}")
        edit.textChanged.connect(self.validate)

        def read() -> Any:
            text = edit.text().strip()
            return text if text else None

        return edit, read

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

    def set_values(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            editor = self._fields[name].editor
            if isinstance(editor, QLineEdit):
                editor.setText(str(value))

    def payload(self) -> dict[str, Any]:
        return {
            name: value
            for name, field in self._fields.items()
            if (value := field.read()) is not None
        }

    def validate(self) -> BaseModel | None:
        """Validate the form as the engine will; show each field's first problem under it."""
        for name, field in self._fields.items():
            field.error.setText(self._image_errors.get(name, ""))
        inputs = self.remote_form.inputs if self.remote_form else self.model.inputs
        try:
            checked = inputs.model_validate(self.payload())
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                name = str(err["loc"][0]) if err["loc"] else ""
                if name in self._fields and not self._fields[name].error.text():
                    message = "required" if err["type"] == "missing" else err["msg"]
                    self._fields[name].error.setText(message)
            self.predict_button.setEnabled(False)
            return None
        self.predict_button.setEnabled(True)
        return checked

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Ctrl+Enter typed in a field: the field ignores it and it arrives here. (The shortcut
        # covers the rest of the window; both end in `submit`.)
        ctrl = event.modifiers() & Qt.KeyboardModifier.ControlModifier
        if ctrl and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submit()
            return
        super().keyPressEvent(event)

    def submit(self) -> None:
        if self.validate() is not None:
            self.predict_button.setEnabled(False)
            self.label_text.setText("running…")
            if self.remote_form is not None:
                self.sigPredictRemote.emit(self.payload())
            else:
                self.sigPredict.emit(self.model.name, self.payload())

    def use_form(self, form: RemoteForm | None) -> None:
        """Build the form from a remote model's inputs; None goes back to the local model."""
        self.remote_form = form
        self.model_box.setEnabled(form is None)
        self._build_form(self.model_box.currentText())

    # -- the result -------------------------------------------------------------------------

    def show_result(self, work: Work) -> None:
        self.predict_button.setEnabled(True)
        while self.scores_layout.rowCount():
            self.scores_layout.removeRow(0)
        if work.status != "ok" or work.output is None:
            message = work.error.message if work.error else work.status
            self.label_text.setText(f"{work.status}: {message}")
            return
        self.label_text.setText(str(work.output["label"]))
        for label, score in sorted(work.output["scores"].items(), key=lambda kv: -kv[1]):
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(round(score * 1000))
            bar.setFormat(f"{score:.1%}")
            self.scores_layout.addRow(label, bar)
        stages = "  ".join(f"{s[0]} {s[2] / 1000:.2f}" for s in work.spans)
        self.stages_text.setText(f"{work.latency_us / 1000:.2f} ms — {stages} (ms)")
        self.request_text.setText(f"request {work.request_id}")
