"""The dialog that adds or edits a remote target: every `Target` field, and its bearer token.

The dialog validates with the same pydantic model the store uses and shows what is wrong inline,
naming the field, without closing or clearing anything. It does not save: `sigSubmitted` hands
the target to its owner (`gui.targets.targets_view`), which saves it and either closes the dialog or
shows the store's own refusal (a name taken) with `show_error`.

Secrets are never shown in clear once given: the token field is a password field that starts
empty and says where the stored token lives ("stored in keyring" / "kept in memory for this
session"); credentials (headers, and query parameters of the URL, by the rule in
`engine.remote.credentials`) read back as `***`, and a `***` left as it was keeps the stored
value. Open it with `open()` (or `ask()`, a future of its result), never `exec()`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from engine.remote.credentials import REDACTED, redact_headers
from engine.remote.secrets import Where
from engine.remote.target_store import KEEP, StoredTarget
from engine.remote.targets import PROTOCOLS, Target
from gui.shared.fields import choice_box, number_box, text_box

LABELS = {
    "name": "Name",
    "base_url": "Base URL",
    "protocol": "Protocol",
    "model": "Model",
    "headers": "Headers",
    "timeout_s": "Timeout",
    "connect_timeout_s": "Connect timeout",
    "verify_tls": "Verify TLS",
    "body_template": "Body template",
    "token": "Bearer token",
    "server_stats": "Server statistics",
    "metrics_url": "Metrics URL",
    "prometheus_url": "Prometheus",
    "prometheus_selector": "Selector",
}
WHERE_TEXT = {"keyring": "stored in keyring", "memory": "kept in memory for this session"}
_ERROR_STYLE = "border: 1px solid #d9534f;"


class DraftError(ValueError):
    """What is wrong with the dialog's input: (field, message) pairs; `TargetDialog` shows them."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{LABELS.get(f, f)}: {m}" for f, m in problems))
        self.problems = problems


def parse_header_lines(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise DraftError([("headers", f"line {number} is not 'Name: value'")])
        headers[name.strip()] = value.strip()
    return headers


class TargetDialog(QDialog):
    """The add / edit form for one target and its token; `TargetsView` opens it and saves it."""

    sigSubmitted = Signal(object, object)  # Target, token: str (new) | None (none) | KEEP

    def __init__(
        self,
        where: Where,
        existing: StoredTarget | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.existing = existing
        self.setWindowTitle("Edit target" if existing else "Add target")
        self.setMinimumWidth(520)
        self.name_edit = text_box("prod-iris")
        self.url_edit = text_box("https://models.example.com")
        self.protocol_box = choice_box(
            PROTOCOLS,
            "inferdeck: this project's /predict · oip: Open Inference Protocol v2 (KServe, "
            "Triton, MLServer) · json: any URL with a JSON body template",
        )
        self.model_edit = text_box("the model to check and send to (OIP: required)")
        self.headers_edit = QPlainTextEdit()
        self.headers_edit.setPlaceholderText("X-Tenant: team-a\nX-Api-Key: …")
        self.headers_edit.setFixedHeight(64)
        self.timeout_spin = _seconds(10.0)
        self.connect_spin = _seconds(5.0)
        self.verify_box = QCheckBox("Verify TLS certificates")
        self.verify_box.setChecked(True)
        self.verify_box.setToolTip("Turn off only for a test server with a self-signed certificate")
        self.template_edit = QPlainTextEdit()
        self.template_edit.setPlaceholderText('{"data": {{payload}}}')
        self.template_edit.setFixedHeight(56)
        # Where the server's own statistics come from (engine.remote.server_stats).
        self.server_stats_box = QCheckBox("Use the OIP statistics and /metrics the server offers")
        self.server_stats_box.setChecked(True)
        self.metrics_edit = text_box(
            "the server's Prometheus metrics, e.g. http://host:8002/metrics"
        )
        self.prometheus_edit = text_box("a Prometheus server scraping the replicas (a fleet)")
        self.selector_edit = text_box('its label selector, e.g. {job="inferdeck"}')
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_where = QLabel("")
        self.forget_token = QCheckBox("Forget the stored token")
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #d9534f;")
        self.editors: dict[str, QWidget] = {
            "name": self.name_edit,
            "base_url": self.url_edit,
            "protocol": self.protocol_box,
            "model": self.model_edit,
            "headers": self.headers_edit,
            "timeout_s": self.timeout_spin,
            "connect_timeout_s": self.connect_spin,
            "verify_tls": self.verify_box,
            "body_template": self.template_edit,
            "token": self.token_edit,
            "server_stats": self.server_stats_box,
            "metrics_url": self.metrics_edit,
            "prometheus_url": self.prometheus_edit,
            "prometheus_selector": self.selector_edit,
        }
        form = QFormLayout()
        for key in ("name", "base_url", "protocol", "model", "headers"):
            form.addRow(LABELS[key], self.editors[key])
        form.addRow(LABELS["timeout_s"], self.timeout_spin)
        form.addRow(LABELS["connect_timeout_s"], self.connect_spin)
        form.addRow("", self.verify_box)
        form.addRow(LABELS["body_template"], self.template_edit)
        form.addRow(LABELS["token"], self.token_edit)
        form.addRow("", self.token_where)
        form.addRow("", self.forget_token)
        form.addRow(LABELS["server_stats"], self.server_stats_box)
        for key in ("metrics_url", "prometheus_url", "prometheus_selector"):
            form.addRow(LABELS[key], self.editors[key])
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        self.protocol_box.currentTextChanged.connect(self._protocol_changed)
        self._fill(where)

    def _fill(self, where: Where) -> None:
        found = self.existing
        has_token = found is not None and found.has_token
        self.forget_token.setVisible(has_token)
        if has_token:
            self.token_where.setText(f"A token is {WHERE_TEXT[where]}; type one to replace it")
            self.token_edit.setPlaceholderText(WHERE_TEXT[where])
        else:
            self.token_where.setText(f"Optional: {WHERE_TEXT[where]}, never in the database")
        if found is None:
            self._protocol_changed(self.protocol_box.currentText())
            return
        t = found.target
        self.name_edit.setText(t.name)
        self.name_edit.setReadOnly(True)  # the name is the target's key (remove and add to rename)
        self.url_edit.setText(t.redacted_url())
        self.protocol_box.setCurrentText(t.protocol)
        self.model_edit.setText(t.model or "")
        missing = [k for k in found.missing_secrets if not k.startswith("?")]  # "?x": the URL's
        shown = redact_headers(t.headers) | dict.fromkeys(missing, REDACTED)
        self.headers_edit.setPlainText("\n".join(f"{k}: {v}" for k, v in shown.items()))
        self.timeout_spin.setValue(t.timeout_s)
        self.connect_spin.setValue(t.connect_timeout_s)
        self.verify_box.setChecked(t.verify_tls)
        self.template_edit.setPlainText(t.body_template or "")
        self.server_stats_box.setChecked(t.server_stats)
        self.metrics_edit.setText(t.metrics_url or "")
        self.prometheus_edit.setText(t.prometheus_url or "")
        self.selector_edit.setText(t.prometheus_selector or "")
        self._protocol_changed(t.protocol)

    def _protocol_changed(self, protocol: str) -> None:
        self.template_edit.setEnabled(protocol == "json")

    # -- reading the input ------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = parse_header_lines(self.headers_edit.toPlainText())
        found = self.existing
        if found is None:
            return headers
        # A credential left as `***` keeps its stored value; one this process cannot read
        # (kept in another session's memory) must be typed again.
        for key, value in list(headers.items()):
            if value != REDACTED:
                continue
            if key in found.target.headers:
                headers[key] = found.target.headers[key]
            elif key in found.missing_secrets:
                raise DraftError([("headers", f"the value of {key} is not available; type it")])
        return headers

    def _url(self) -> str:
        url = self.url_edit.text().strip()
        found = self.existing
        # The URL as shown, `***` and all, keeps the stored one with its credentials.
        if found is not None and url == found.target.redacted_url():
            return found.target.base_url
        if REDACTED in url:
            raise DraftError([("base_url", "type the URL's credentials instead of ***")])
        return url

    def draft(self) -> tuple[Target, Any]:
        """The target and the token choice, or `DraftError` naming each bad field."""
        problems: list[tuple[str, str]] = []
        try:
            headers = self._headers()
        except DraftError as exc:
            problems.extend(exc.problems)
            headers = {}
        try:
            url = self._url()
        except DraftError as exc:
            problems.extend(exc.problems)
            url = ""
        template = self.template_edit.toPlainText().strip()
        fields_protocol = self.protocol_box.currentText()
        fields: dict[str, Any] = {
            "name": self.name_edit.text().strip(),
            "base_url": url,
            "protocol": fields_protocol,
            "model": self.model_edit.text().strip() or None,
            "headers": headers,
            "timeout_s": self.timeout_spin.value(),
            "connect_timeout_s": self.connect_spin.value(),
            "verify_tls": self.verify_box.isChecked(),
            "body_template": template if fields_protocol == "json" and template else None,
            "server_stats": self.server_stats_box.isChecked(),
            "metrics_url": self.metrics_edit.text().strip() or None,
            "prometheus_url": self.prometheus_edit.text().strip() or None,
            "prometheus_selector": self.selector_edit.text().strip() or None,
        }
        if fields["protocol"] == "oip" and not fields["model"]:
            problems.append(("model", "an OIP target needs a model"))
        target: Target | None = None
        try:
            target = Target(**fields)
        except ValidationError as exc:
            for err in exc.errors():
                # A check of two fields together (the Prometheus URL and its selector) has no
                # location: it belongs to the second.
                key = str(err["loc"][0]) if err["loc"] else _whole_target_field(err)
                message = str(err["msg"]).removeprefix("Value error, ")
                problems.append((key, message))
        if problems or target is None:
            order = list(LABELS)  # as the form lists them
            problems.sort(key=lambda p: order.index(p[0]) if p[0] in order else len(order))
            raise DraftError(problems)
        token = self.token_edit.text().strip()
        if token:
            return target, token
        if self.existing is None:
            return target, None
        return target, (None if self.forget_token.isChecked() else KEEP)

    def submit(self) -> None:
        """Save pressed: check the input; valid input goes to the owner, who saves it."""
        try:
            target, token = self.draft()
        except DraftError as exc:
            self.show_error(str(exc), [f for f, _ in exc.problems])
            return
        self.show_error("")
        self.buttons.setEnabled(False)  # until the owner has answered
        self.sigSubmitted.emit(target, token)

    def show_error(self, message: str, fields: list[str] | None = None) -> None:
        """Say what is wrong (nothing typed is lost) and mark the fields named."""
        self.buttons.setEnabled(True)
        self.error_label.setText(message)
        marked = set(fields or [])
        for key, editor in self.editors.items():
            editor.setStyleSheet(_ERROR_STYLE if key in marked else "")

    def ask(self) -> asyncio.Future[int]:
        """Open the dialog (window-modal, not a nested loop); the future gets its result."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def done(result: int) -> None:
            if not future.done():
                future.set_result(result)

        self.finished.connect(done)
        self.open()
        return future


def _whole_target_field(err: Any) -> str:
    """The field a whole-target check's message is about (the form marks it)."""
    return "prometheus_selector" if "Prometheus" in str(err.get("msg", "")) else "name"


def _seconds(value: float) -> QDoubleSpinBox:
    return number_box(0.1, 600.0, value, decimals=1, step=0.5, suffix=" s")
