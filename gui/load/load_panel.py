"""The Load panel: what to send where, Start / Stop, and the run's figures as it goes.

The panel only builds a `LoadRequest` and shows what `gui.load.load_host.LoadHost` reports; it
never touches the runner. A stored target (from the Targets tab's store) fills and locks the
URL, protocol and model; otherwise they are typed. The figures are labels set from the host's
throttled snapshots (≤ 20 a second), so they cost nothing per request.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.cli.load_args import LoadRequest, LoadStartError, PayloadChoice, PayloadKind
from engine.ids import short_id
from engine.remote.credentials import host_name
from engine.remote.load import LoadSnapshot
from engine.remote.plan import LoadPlan
from engine.remote.target_store import StoredTarget
from engine.remote.targets import PROTOCOLS, Target, describe_validation
from gui.shared.fields import choice_box, count_box, number_box, text_box
from gui.shared.file_dialogs import file_dialog

TYPED = "URL below"
PAYLOADS: tuple[tuple[PayloadKind, str], ...] = (
    ("example", "Example from the model's schema"),
    ("form", "This JSON"),
    ("file", "A file, cycled"),
    ("history", "Replay stored inputs of the model"),
)
FIGURES = ("elapsed", "sent", "in flight", "ok", "failed", "throughput", "p50", "p99")


class LoadPanel(QWidget):
    """The Load tab's form, Start / Stop and figures; `attach_load` wires it to `LoadHost`."""

    sigStart = Signal(object)  # LoadRequest (its token filled in by whoever owns the store)
    sigStop = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stored: dict[str, StoredTarget] = {}

        self.target_box = QComboBox()
        self.target_box.addItem(TYPED)
        self.target_box.setToolTip("A target saved in the Targets tab, or the URL typed below")
        self.target_box.currentTextChanged.connect(self._target_chosen)
        self.url_edit = text_box("http://127.0.0.1:8000")
        self.protocol_box = choice_box(PROTOCOLS)
        self.model_edit = text_box("model name (inferdeck and oip)")

        self.mode_box = choice_box(
            ["Open model: a constant rate", "Closed model: N users"],
            "Open: requests leave on schedule and latency counts from the intended send time "
            "(a stalling server shows). Closed: each user sends again when answered.",
        )
        self.rate_spin = number_box(0.1, 1_000_000, 100, decimals=1, suffix=" req/s")
        self.users_spin = count_box(1, 10_000, 8, suffix=" users")
        self.mode_box.currentIndexChanged.connect(self._mode_changed)
        self.ramp_spin = number_box(
            0, 3600, suffix=" s", tooltip="Ramp the rate (or the users) up from 0 over this long"
        )
        self.stop_box = choice_box(["Duration", "Request count"])
        self.duration_spin = number_box(0.1, 86_400, 10, suffix=" s")
        self.requests_spin = count_box(1, 100_000_000, 1000, suffix=" requests")
        self.stop_box.currentIndexChanged.connect(self._stop_changed)
        self.in_flight_spin = count_box(
            1, 100_000, 1000, tooltip="At most this many requests out at once"
        )

        self.payload_box = QComboBox()
        for kind, text in PAYLOADS:
            self.payload_box.addItem(text, kind)
        self.payload_box.currentIndexChanged.connect(self._payload_changed)
        self.payload_edit = QPlainTextEdit()
        self.payload_edit.setPlaceholderText('{"sepal_length": 5.1, "sepal_width": 3.5, …}')
        self.payload_edit.setMaximumHeight(90)
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText("JSON, JSONL or CSV rows")
        self.browse_button = QPushButton("Browse…")
        self.browse_button.clicked.connect(self._browse)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Send the load (Ctrl+Shift+L)")
        self.start_button.setShortcut("Ctrl+Shift+L")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop sending; what was recorded is kept")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.sigStop)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        where = QGroupBox("Target")
        where_form = QFormLayout(where)
        where_form.addRow("Stored target", self.target_box)
        where_form.addRow("URL", self.url_edit)
        where_form.addRow("Protocol", self.protocol_box)
        where_form.addRow("Model", self.model_edit)
        how = QGroupBox("Traffic")
        how_form = QFormLayout(how)
        rate_row = QHBoxLayout()
        rate_row.addWidget(self.rate_spin)
        rate_row.addWidget(self.users_spin)
        how_form.addRow("Model", self.mode_box)
        how_form.addRow("Rate / users", rate_row)
        how_form.addRow("Ramp-up", self.ramp_spin)
        stop_row = QHBoxLayout()
        stop_row.addWidget(self.stop_box)
        stop_row.addWidget(self.duration_spin)
        stop_row.addWidget(self.requests_spin)
        how_form.addRow("Stop after", stop_row)
        how_form.addRow("Max in flight", self.in_flight_spin)
        what = QGroupBox("Payload")
        what_layout = QVBoxLayout(what)
        what_layout.addWidget(self.payload_box)
        what_layout.addWidget(self.payload_edit)
        file_row = QHBoxLayout()
        file_row.addWidget(self.file_edit, 1)
        file_row.addWidget(self.browse_button)
        what_layout.addLayout(file_row)

        figures = QGroupBox("This run")
        grid = QGridLayout(figures)
        self.figures: dict[str, QLabel] = {}
        for i, name in enumerate(FIGURES):
            value = QLabel("—")
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            value.setMinimumWidth(90)
            font = value.font()
            font.setPointSizeF(font.pointSizeF() * 1.3)
            font.setBold(True)
            value.setFont(font)
            grid.addWidget(QLabel(name), i // 4 * 2, i % 4)
            grid.addWidget(value, i // 4 * 2 + 1, i % 4)
            self.figures[name] = value
        self.errors_label = QLabel("errors: none")
        self.errors_label.setWordWrap(True)
        grid.addWidget(self.errors_label, 4, 0, 1, 4)

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        left = QVBoxLayout()
        left.addWidget(where)
        left.addWidget(how)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(what)
        right.addWidget(figures)
        right.addLayout(buttons)
        right.addWidget(self.message)
        right.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addLayout(right, 1)
        self._mode_changed()
        self._stop_changed()
        self._payload_changed()

    # -- the form -------------------------------------------------------------------------------

    def set_targets(self, targets: list[StoredTarget]) -> None:
        """The stored targets to choose from (the Targets tab's list, as it changes)."""
        current = self.target_box.currentText()
        self._stored = {t.target.name: t for t in targets}
        self.target_box.blockSignals(True)
        self.target_box.clear()
        self.target_box.addItem(TYPED)
        self.target_box.addItems(sorted(self._stored))
        self.target_box.setCurrentText(current if current in self._stored else TYPED)
        self.target_box.blockSignals(False)
        self._target_chosen(self.target_box.currentText())

    def stored_target(self) -> StoredTarget | None:
        return self._stored.get(self.target_box.currentText())

    def _target_chosen(self, name: str) -> None:
        stored = self._stored.get(name)
        typed = stored is None
        for widget in (self.url_edit, self.protocol_box, self.model_edit):
            widget.setEnabled(typed)
        if stored is not None:
            self.url_edit.setText(stored.target.redacted_url())  # shown, not used: no secrets
            self.protocol_box.setCurrentText(stored.target.protocol)
            self.model_edit.setText(stored.target.model or "")

    def _mode_changed(self) -> None:
        open_model = self.mode_box.currentIndex() == 0
        self.rate_spin.setVisible(open_model)
        self.users_spin.setVisible(not open_model)

    def _stop_changed(self) -> None:
        by_time = self.stop_box.currentIndex() == 0
        self.duration_spin.setVisible(by_time)
        self.requests_spin.setVisible(not by_time)

    def _payload_changed(self) -> None:
        kind = self.payload_kind()
        self.payload_edit.setVisible(kind == "form")
        self.file_edit.setVisible(kind == "file")
        self.browse_button.setVisible(kind == "file")

    def payload_kind(self) -> PayloadKind:
        kind: PayloadKind = self.payload_box.currentData()
        return kind

    def _browse(self) -> None:
        dialog = file_dialog(self, "Payload rows")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilter("Rows (*.json *.jsonl *.ndjson *.csv);;All files (*)")
        dialog.fileSelected.connect(self.file_edit.setText)
        dialog.open()  # never exec(): it would re-enter the qasync loop

    def fill(self, request: LoadRequest) -> None:
        """Show a request's settings (a run started from the command line)."""
        target, plan = request.target, request.plan
        stored = self._stored.get(target.name)
        if stored is not None and stored.target.base_url == target.base_url:
            self.target_box.setCurrentText(target.name)
        else:
            self.target_box.setCurrentText(TYPED)
            self.url_edit.setText(target.base_url)
            self.protocol_box.setCurrentText(target.protocol)
            self.model_edit.setText(target.model or "")
        self.mode_box.setCurrentIndex(0 if plan.rate is not None else 1)
        if plan.rate is not None:
            self.rate_spin.setValue(plan.rate)
        if plan.concurrency is not None:
            self.users_spin.setValue(plan.concurrency)
        self.ramp_spin.setValue(plan.ramp_s)
        self.stop_box.setCurrentIndex(0 if plan.duration_s is not None else 1)
        if plan.duration_s is not None:
            self.duration_spin.setValue(plan.duration_s)
        if plan.requests is not None:
            self.requests_spin.setValue(plan.requests)
        self.in_flight_spin.setValue(plan.max_in_flight)
        index = [kind for kind, _ in PAYLOADS].index(request.payload.kind)
        self.payload_box.setCurrentIndex(index)
        if request.payload.kind == "form":
            self.payload_edit.setPlainText(request.payload.text)
        elif request.payload.kind == "file":
            self.file_edit.setText(request.payload.text)

    def request(self) -> LoadRequest:
        """The form as a request; `LoadStartError` names what is wrong."""
        stored = self.stored_target()
        if stored is not None:
            target = stored.target
        else:
            url = self.url_edit.text().strip()
            try:
                target = Target(
                    name=host_name(url),
                    base_url=url,
                    protocol=self.protocol_box.currentText(),
                    model=self.model_edit.text().strip() or None,
                )
            except ValidationError as exc:
                raise LoadStartError(describe_validation(exc)) from None
        open_model = self.mode_box.currentIndex() == 0
        by_time = self.stop_box.currentIndex() == 0
        try:
            plan = LoadPlan(
                rate=self.rate_spin.value() if open_model else None,
                concurrency=None if open_model else self.users_spin.value(),
                duration_s=self.duration_spin.value() if by_time else None,
                requests=None if by_time else self.requests_spin.value(),
                ramp_s=self.ramp_spin.value(),
                max_in_flight=self.in_flight_spin.value(),
            )
        except ValueError as exc:
            raise LoadStartError(str(exc)) from None
        kind = self.payload_kind()
        text = {"form": self.payload_edit.toPlainText(), "file": self.file_edit.text().strip()}
        return LoadRequest(target, plan, PayloadChoice(kind, text.get(kind, "")))

    def start(self) -> None:
        try:
            request = self.request()
        except LoadStartError as exc:
            self.message.setText(str(exc))
            return
        self.sigStart.emit(request)

    # -- what the host reports ------------------------------------------------------------------

    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def on_preparing(self, target: Target) -> None:
        self.set_running(True)
        for value in self.figures.values():
            value.setText("—")
        self.errors_label.setText("errors: none")
        self.message.setText(f"Checking {target.redacted_url()} …")

    def on_started(self) -> None:
        self.message.setText("Sending…")

    def on_snapshot(self, snap: LoadSnapshot) -> None:
        values = self.figures
        values["elapsed"].setText(f"{snap.elapsed_s:,.1f} s")
        values["sent"].setText(f"{snap.sent:,}")
        values["in flight"].setText(f"{snap.in_flight:,}")
        values["ok"].setText(f"{snap.ok:,}")
        values["failed"].setText(f"{snap.failed:,}")
        values["throughput"].setText(f"{snap.throughput_per_s:,.0f}/s")
        values["p50"].setText(f"{snap.p50_ms:,.2f} ms")
        values["p99"].setText(f"{snap.p99_ms:,.2f} ms")
        self.errors_label.setText(error_text(snap.errors))

    def on_finished(self, summary: dict[str, Any]) -> None:
        self.set_running(False)
        lat = summary.get("latency_ms") or {}
        lag = summary.get("ui_loop_lag_ms") or {}
        text = (
            f"Run {short_id(str(summary.get('run_id', '')))} stored: {summary.get('ok', 0):,} ok, "
            f"{summary.get('failed', 0):,} failed in {summary.get('duration_s', 0):,.1f} s, "
            f"{summary.get('throughput_per_s', 0):,.0f}/s, p99 {lat.get('p99', 0):,.2f} ms"
        )
        if lag:
            text += f" · UI lag p99 {lag.get('p99', 0):.1f} ms"
        self.message.setText(text)

    def on_failed(self, message: str) -> None:
        self.set_running(False)
        self.message.setText(f"Could not start: {message}")


def error_text(errors: dict[str, int]) -> str:
    if not errors:
        return "errors: none"
    ranked = sorted(errors.items(), key=lambda kv: -kv[1])
    return "errors: " + ", ".join(f"{name} {count:,}" for name, count in ranked)
