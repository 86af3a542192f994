"""Predict on a remote target from the Predict view: pick a stored target beside the local models.

Choosing an OIP target reads its model's metadata (`GET /v2/models/{m}`) through one long-lived
`TargetClient` and gives the Predict view a form built from the tensors
(`engine.remote.oip_form`), validated inline like a local model's. Predict sends the validated
payload through the same client (every request traced, with the server's `Server-Timing`
joined in) and stores it, source `remote`, with its spans, before the answer is shown.

Only OIP targets get a form: an `inferdeck` or `json` target has no metadata to build one from
(send to those with `inferdeck load`, or the Load panel).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QComboBox, QLabel, QLineEdit

from engine.remote.client import TargetClient
from engine.remote.oip_form import (
    RemoteAnswer,
    RemoteForm,
    adapter_for,
    fetch_oip_form,
    send_prediction,
)
from engine.remote.protocols import ProtocolError
from engine.remote.secrets import TokenStore
from engine.remote.target_store import StoredTarget
from engine.stats import RunRecorder
from engine.tasks import TaskOwner
from gui.predict.predict_view import PredictView
from storage import Database

log = logging.getLogger(__name__)

LOCAL = "Local engine"


class RemotePredict(QObject):
    """Adds the "Send to" choice to a Predict view and serves its remote predictions."""

    def __init__(
        self,
        view: PredictView,
        db: Database | None,
        tokens: TokenStore,
        tasks: TaskOwner,
        run: RunRecorder | None = None,
        on_stored: Callable[[RemoteAnswer], None] | None = None,
    ) -> None:
        super().__init__(view)
        self.view = view
        self.tokens = tokens
        self.tasks = tasks
        self.targets: dict[str, StoredTarget] = {}
        self.client: TargetClient | None = None
        self.form: RemoteForm | None = None
        # Where each answer goes: its row (counted in `run` when given), then `on_stored`.
        self.db = db
        self.run = run
        self.on_stored = on_stored
        self.answers = 0
        self._generation = 0  # a newer choice makes an older one's late metadata moot
        self.source_box = QComboBox()
        self.source_box.setObjectName("sendTo")
        self.source_box.addItem(LOCAL)
        self.source_box.setToolTip(
            "Where the prediction goes: the local engine, or a stored OIP target "
            "(its form comes from the model's metadata)"
        )
        view.top_bar.insertWidget(0, QLabel("Send to"))
        view.top_bar.insertWidget(1, self.source_box, 1)
        self.source_box.currentTextChanged.connect(self._chosen)
        view.sigPredictRemote.connect(
            lambda payload: tasks.spawn(self.predict(payload), "remote-predict")
        )

    def set_targets(self, targets: list[StoredTarget]) -> None:
        """The stored targets changed: list them, keeping the choice if it is still there."""
        current = self.source_box.currentText()
        before = self.targets.get(current)
        self.targets = {s.target.name: s for s in targets}
        self.source_box.blockSignals(True)
        self.source_box.clear()
        self.source_box.addItem(LOCAL)
        for name, stored in self.targets.items():
            self.source_box.addItem(name)
            index = self.source_box.count() - 1
            tip = f"{stored.target.protocol} · {stored.target.redacted_url()}"
            self.source_box.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        self.source_box.blockSignals(False)
        if current in self.targets:
            self.source_box.setCurrentText(current)
            if before is None or before.target != self.targets[current].target:
                self._chosen(current)  # its settings changed: read its metadata again
        else:
            self.source_box.setCurrentText(LOCAL)
            if current != LOCAL:
                self._chosen(LOCAL)

    def _chosen(self, name: str) -> None:
        self.tasks.spawn(self.choose(None if name == LOCAL else name), "remote-form")

    async def choose(self, name: str | None) -> RemoteForm | None:
        """Use the local models (None) or the target `name`: read its metadata, build its form."""
        self._generation += 1
        generation = self._generation
        await self._close_client()
        self.form = None
        self.view.use_form(None)
        stored = self.targets.get(name) if name is not None else None
        if stored is None:
            return None
        target = stored.target
        if target.protocol != "oip":
            self._say(f"{name} speaks {target.protocol}: forms are built for OIP targets only")
            return None
        self._say(f"reading {target.model}'s inputs from {name}…")
        client = TargetClient(
            target, token=self.tokens.get(target.name), max_connections=4, trace_every=1
        )
        try:
            form = await fetch_oip_form(client)
        except ProtocolError as exc:
            await client.aclose()
            if generation == self._generation:
                self._say(f"{name}: {exc}")
            return None
        if generation != self._generation:  # chosen away while the metadata was on its way
            await client.aclose()
            return None
        self.client, self.form = client, form
        self.view.use_form(form)
        # Say in the field itself what a tensor field takes (the builder only shows ranges).
        for spec in form.fields:
            editor = self.view._fields[spec.name].editor
            if isinstance(editor, QLineEdit) and spec.type == "text":
                editor.setPlaceholderText(spec.description)
        self._say(f"{target.model} on {name}: {len(form.fields)} inputs")
        return form

    async def predict(self, raw: dict[str, Any]) -> RemoteAnswer | None:
        """Send the form's payload to the chosen target; show and return what came back."""
        client, form = self.client, self.form
        if client is None or form is None:
            self._say("no remote target chosen")
            self.view.predict_button.setEnabled(True)
            return None
        try:
            payload = form.inputs.model_validate(raw).model_dump(by_alias=True, exclude_none=True)
            adapter = adapter_for(client.target, form)
        except (ValidationError, ProtocolError) as exc:
            self._say(str(exc))
            self.view.predict_button.setEnabled(True)
            return None
        answer = await send_prediction(client, adapter, payload, db=self.db, run=self.run)
        self.answers += 1
        self._show(answer, client.target.name)
        if self.on_stored is not None:
            self.on_stored(answer)
        return answer

    def _say(self, text: str) -> None:
        self.view.label_text.setText(text)

    def _show(self, answer: RemoteAnswer, target: str) -> None:
        view = self.view
        view.predict_button.setEnabled(True)
        while view.scores_layout.rowCount():
            view.scores_layout.removeRow(0)
        if answer.status != "ok":
            view.label_text.setText(f"failed: {answer.error}")
        else:
            label, outputs = summarize_outputs(answer.answer)
            view.label_text.setText(label)
            for name, text in outputs:
                value = QLabel(text)
                value.setWordWrap(True)
                view.scores_layout.addRow(name, value)
        stages = "  ".join(f"{s[0]} {s[2] / 1000:.2f}" for s in answer.spans)
        view.stages_text.setText(f"{answer.latency_us / 1000:.2f} ms — {stages} (ms)")
        view.request_text.setText(f"request {answer.request_id} → {target}")

    async def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        self._generation += 1
        await self._close_client()


def summarize_outputs(answer: Any) -> tuple[str, list[tuple[str, str]]]:
    """An OIP answer as a headline (a `label` output's value, else "ok") and one line per
    output tensor."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list):
        return "ok", []
    label = "ok"
    lines: list[tuple[str, str]] = []
    for out in outputs:
        if not isinstance(out, dict):
            continue
        data = out.get("data", [])
        name = str(out.get("name", "?"))
        values = data if isinstance(data, list) else [data]
        shown = ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values[:16])
        if len(values) > 16:
            shown += f", … ({len(values)} values)"
        lines.append((name, shown))
        if name == "label" and values:
            label = str(values[0])
    return label, lines
