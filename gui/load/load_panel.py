"""The Load panel: what to send where, Start / Stop, and the run's figures as it goes.

The panel only builds a `LoadRequest` and shows what `gui.load.load_host.LoadHost` reports; it
never touches the runner. A stored target (from the Targets tab's store) fills and locks the
URL, protocol and model; otherwise they are typed. The figures are labels set from the host's
throttled snapshots (≤ 20 a second), so they cost nothing per request: live (the recent window)
while the run goes, then the stored run's own summary, the figures `inferdeck runs show` gives.

A field's error is shown under that field, in plain words, when Start finds it, and goes as
soon as the field is right again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QResizeEvent
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
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from engine.cli.load_args import (
    LoadRequest,
    LoadStartError,
    PayloadChoice,
    PayloadKind,
    payload_problem,
    url_problem,
)
from engine.ids import short_id
from engine.remote.credentials import host_name
from engine.remote.load.server_view import interval_text, server_line
from engine.remote.plan import LoadPlan
from engine.remote.target_store import StoredTarget
from engine.remote.targets import PROTOCOLS, Target
from gui.load.load_live_chart import LoadLiveChart
from gui.shared.fields import MessageLabel, choice_box, count_box, number_box, text_box
from gui.shared.file_dialogs import file_dialog

if TYPE_CHECKING:
    from engine.remote.load import LoadSnapshot

TYPED = "URL below"
PAYLOADS: tuple[tuple[PayloadKind, str], ...] = (
    ("example", "Example from the model's schema"),
    ("form", "This JSON"),
    ("file", "A file, cycled"),
    ("history", "Replay stored inputs of the model"),
)
FIGURES = ("elapsed", "sent", "in flight", "ok", "failed", "throughput", "p50", "p99")
FIELDS = ("url", "model", "payload")  # the form's fields an error can be shown under
FIGURE_SCALE = 1.3  # the figures' font against the captions', when there is room
FIGURE_MIN_PX = 90  # the width a figure asks for, so the columns do not jump as figures grow
LIVE_TITLE = "This run: live (the last 5 s)"
FINAL_TITLE = "This run: final (as stored)"


class FigureLabel(QLabel):
    """A big bold figure that is always shown whole: it never lets the layout make it narrower
    than its text at the captions' size (`minimumSizeHint`), and draws as large as fits, up to
    `FIGURE_SCALE` times that. (A fixed minimum width let a narrow window, 1024 px, cut
    "178.18 ms" to "78.18 ms": a right-aligned label loses its first digits.)"""

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._small = QFont(self.font())
        self._small.setBold(True)
        self._large = QFont(self._small)
        self._large.setPointSizeF(self._small.pointSizeF() * FIGURE_SCALE)
        self.setFont(self._large)

    def _text_width(self, font: QFont) -> int:
        margins = self.contentsMargins()
        extra = margins.left() + margins.right() + 2 * self.margin() + 2
        return QFontMetrics(font).horizontalAdvance(self.text()) + extra

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(max(FIGURE_MIN_PX, self._text_width(self._large)), hint.height())

    def minimumSizeHint(self) -> QSize:
        return QSize(self._text_width(self._small), super().minimumSizeHint().height())

    def setText(self, text: str) -> None:
        super().setText(text)
        self._fit()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        """The largest size, from `FIGURE_SCALE` down to the captions', at which it fits."""
        room = self.contentsRect().width()
        size = self._large.pointSizeF()
        font = QFont(self._large)
        while size > self._small.pointSizeF() and self._text_width(font) > room:
            size = max(size - 0.5, self._small.pointSizeF())
            font.setPointSizeF(size)
        if font != self.font():
            self.setFont(font)


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
        self.url_edit = text_box("http://127.0.0.1:8000", "The target's base URL")
        self.protocol_box = choice_box(PROTOCOLS)
        self.model_edit = text_box(
            "e.g. iris (inferdeck and OIP targets)",
            "The name of the model the target serves, as its URLs name it "
            "(/models/iris, /v2/models/iris/infer); leave empty for a plain JSON API",
        )

        self.mode_box = choice_box(
            ["Open: a constant rate", "Closed: N users"],
            "How requests leave. Open: on a schedule, at a fixed rate, and latency counts from "
            "the intended send time (a stalling server shows). Closed: N users, each sending "
            "again when answered.",
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
        self.message = MessageLabel("")
        # Each field's own error line, under it; hidden while the field is right.
        self.field_errors: dict[str, MessageLabel] = {}
        for name in FIELDS:
            label = MessageLabel("", error=True)
            label.setVisible(False)
            self.field_errors[name] = label
        self.url_edit.textChanged.connect(self._recheck)
        self.model_edit.textChanged.connect(self._recheck)
        self.protocol_box.currentTextChanged.connect(self._recheck)
        self.payload_edit.textChanged.connect(self._recheck)
        self.file_edit.textChanged.connect(self._recheck)

        where = QGroupBox("Target")
        where_form = QFormLayout(where)
        where_form.addRow("Stored target", self.target_box)
        where_form.addRow("URL", self.url_edit)
        where_form.addRow("", self.field_errors["url"])
        where_form.addRow("Protocol", self.protocol_box)
        where_form.addRow("Model name", self.model_edit)
        where_form.addRow("", self.field_errors["model"])
        how = QGroupBox("Traffic")
        how_form = QFormLayout(how)
        rate_row = QHBoxLayout()
        rate_row.addWidget(self.rate_spin)
        rate_row.addWidget(self.users_spin)
        how_form.addRow("Traffic shape", self.mode_box)
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
        what_layout.addWidget(self.field_errors["payload"])

        self.figures_box = figures = QGroupBox("This run")
        figures.setToolTip(
            "While the run goes: live figures over the last few seconds. After it: the stored "
            "run's summary, the same figures `inferdeck runs show` gives."
        )
        grid = QGridLayout(figures)
        self.figures: dict[str, QLabel] = {}
        for i, name in enumerate(FIGURES):
            value = FigureLabel("—")
            grid.addWidget(QLabel(name), i // 4 * 2, i % 4)
            grid.addWidget(value, i // 4 * 2 + 1, i % 4)
            self.figures[name] = value
        self.errors_label = QLabel("errors: none")
        self.errors_label.setWordWrap(True)
        grid.addWidget(self.errors_label, 4, 0, 1, 4)
        # The server's own figures (its statistics or metrics), when the target offers them.
        self.server_label = QLabel("")
        self.server_label.setWordWrap(True)
        self.server_label.setVisible(False)
        grid.addWidget(self.server_label, 5, 0, 1, 4)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("no run yet")
        self.progress_bar.setToolTip("Elapsed of the planned duration, or answered of the requests")
        self.time_left = QLabel("")
        grid.addWidget(self.progress_bar, 6, 0, 1, 3)
        grid.addWidget(self.time_left, 6, 3)
        self.chart = LoadLiveChart()
        self._plan: LoadPlan | None = None
        self._wanted: str | None = None  # a target asked for before it was listed

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
        columns = QHBoxLayout()
        columns.addLayout(left, 1)
        columns.addLayout(right, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(columns, 1)
        layout.addWidget(self.chart)
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
        if self._wanted in self._stored:
            current, self._wanted = self._wanted, None
        self.target_box.setCurrentText(current if current in self._stored else TYPED)
        self.target_box.blockSignals(False)
        self._target_chosen(self.target_box.currentText())

    def select_target(self, name: str | None) -> None:
        """Pick the stored target `name` (the side pane's choice); None leaves the form as it
        is. A name not listed yet is picked when the targets arrive."""
        if name is None:
            return
        if name in self._stored:
            self._wanted = None
            self.target_box.setCurrentText(name)
        else:
            self._wanted = name

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
        self._recheck()

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
        self._recheck()

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

    # -- field errors ---------------------------------------------------------------------------

    def _problems(self) -> dict[str, str]:
        """What is wrong with each field now, in plain words (an empty dict: nothing)."""
        found: dict[str, str] = {}
        model = self.model_edit.text().strip() or None
        if self.stored_target() is None:
            problem = url_problem(self.url_edit.text())
            if problem is not None:
                found["url"] = problem
            if self.protocol_box.currentText() == "oip" and not model:
                found["model"] = "An OIP target needs the model's name"
        choice = self._payload_choice()
        problem = payload_problem(choice, model)
        if problem is not None:
            found["payload"] = problem
        return found

    def _show_errors(self, problems: dict[str, str]) -> None:
        for name, label in self.field_errors.items():
            text = problems.get(name, "")
            label.set_message(text, error=True)
            label.setVisible(bool(text))

    def _recheck(self, *_args: object) -> None:
        """A field changed: an error shown under it goes as soon as it is right (or says what is
        wrong now); fields with no error shown yet are left alone until Start."""
        if not any(label.text() for label in self.field_errors.values()):
            return
        problems = self._problems()
        shown = {
            n: problems[n] for n, lbl in self.field_errors.items() if lbl.text() and n in problems
        }
        self._show_errors(shown)

    def _payload_choice(self) -> PayloadChoice:
        kind = self.payload_kind()
        text = {"form": self.payload_edit.toPlainText(), "file": self.file_edit.text().strip()}
        return PayloadChoice(kind, text.get(kind, ""))

    def request(self) -> LoadRequest:
        """The form as a request; `LoadStartError` says what is wrong, and with which field."""
        problems = self._problems()
        if problems:
            field, text = next(iter(problems.items()))
            raise LoadStartError(text, field)
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
                # What `url_problem` does not see (a user:password beside an Authorization
                # header): the validator's own sentence, without the internal field name.
                message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
                raise LoadStartError(f"The URL is not usable: {message}", "url") from None
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
        return LoadRequest(target, plan, self._payload_choice())

    def start(self) -> None:
        problems = self._problems()
        self._show_errors(problems)
        if problems:
            self.message.set_message("")  # each error is under its field
            return
        try:
            request = self.request()
        except LoadStartError as exc:
            if exc.field in self.field_errors:
                self._show_errors({exc.field: str(exc)})
                self.message.set_message("")
            else:
                self.message.set_message(str(exc), error=True)
            return
        self.sigStart.emit(request)

    # -- what the host reports ------------------------------------------------------------------

    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def on_preparing(self, target: Target, plan: LoadPlan | None = None) -> None:
        self.set_running(True)
        self._plan = plan
        for value in self.figures.values():
            value.setText("—")
        self.errors_label.setText("errors: none")
        self._show_server("")
        self.figures_box.setTitle(LIVE_TITLE)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("starting…")
        self.time_left.setText("")
        self.chart.reset()
        self.message.set_message(f"Checking that {target.redacted_url()} is up…")

    def on_started(self, health: str = "") -> None:
        self.message.set_message(f"{health}: sending…" if health else "Sending…")

    def on_snapshot(self, snap: LoadSnapshot) -> None:
        # (imported here: its package, the load runner's, is not needed before a run)
        from engine.remote.load.progress import left_text, progress

        if not snap.done:
            self.chart.on_snapshot(snap)
        if self._plan is not None:
            done = progress(self._plan, snap.elapsed_s, snap.completed)
            self.progress_bar.setValue(round(done.done * 1000))
            self.progress_bar.setFormat(f"{done.done:.0%}")
            self.time_left.setText(left_text(done.left_s))
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
        interval = (snap.server or {}).get("interval")
        if interval:
            self._show_server("server: " + interval_text(interval))

    def _show_server(self, text: str) -> None:
        self.server_label.setText(text)
        self.server_label.setVisible(bool(text))

    def on_finished(self, summary: dict[str, Any]) -> None:
        """The run is stored: every figure is now the stored summary's (one set of numbers,
        the same `inferdeck runs show` prints), no longer the live window's."""
        self.set_running(False)
        lat = summary.get("latency_ms") or {}
        lag = summary.get("ui_loop_lag_ms") or {}
        values = self.figures
        values["elapsed"].setText(f"{summary.get('duration_s', 0):,.1f} s")
        values["sent"].setText(f"{summary.get('sent', summary.get('accepted', 0)):,}")
        values["in flight"].setText("0")
        values["ok"].setText(f"{summary.get('ok', 0):,}")
        values["failed"].setText(f"{summary.get('failed', 0):,}")
        values["throughput"].setText(f"{summary.get('throughput_per_s', 0):,.0f}/s")
        values["p50"].setText(f"{lat.get('p50', 0):,.2f} ms")
        values["p99"].setText(f"{lat.get('p99', 0):,.2f} ms")
        self.errors_label.setText(error_text(summary.get("errors") or {}))
        server = summary.get("server")
        self._show_server("" if server is None else server_line(server))
        self.figures_box.setTitle(FINAL_TITLE)
        if self._plan is not None and not summary.get("not_sent"):
            finished = summary.get("sent", 0) >= (self._plan.requests or 0)
            if self._plan.duration_s is not None or finished:
                self.progress_bar.setValue(1000)
                self.progress_bar.setFormat("100%")
        self.time_left.setText("done")
        text = f"Run {short_id(str(summary.get('run_id', '')))} stored"
        if lag:
            text += f" · UI lag p99 {lag.get('p99', 0):.1f} ms"
        self.message.set_message(text)

    def on_failed(self, message: str) -> None:
        self.set_running(False)
        self.time_left.setText("")
        if self.progress_bar.value() == 0:
            self.progress_bar.setFormat("not started")
        self.message.set_message(f"Could not start: {message}", error=True)


def error_text(errors: dict[str, int]) -> str:
    if not errors:
        return "errors: none"
    ranked = sorted(errors.items(), key=lambda kv: -kv[1])
    return "errors: " + ", ".join(f"{name} {count:,}" for name, count in ranked)
