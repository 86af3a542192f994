"""Predict on a remote target from the Predict view: pick a stored target beside the local models.

Choosing a target reads what its model takes through one long-lived `TargetClient` and gives the
Predict view a form, validated inline like a local model's and filled from an example:

- `oip`: from the tensors of `GET /v2/models/{m}` (`engine.remote.oip_form`);
- `inferdeck`: from the input schema and labels of `GET /models/{m}`
  (`engine.remote.inferdeck_form`);
- `json`: no metadata, so one JSON text box, and the form says so.

Predict sends the validated payload through the same client (every request traced, with the
server's `Server-Timing` joined in) and stores it, source `remote`, with its spans, before the
answer is shown like a local one: the top label as heading and a bar per class, named by the
model's labels where the target gives them. Anything that went wrong is a message in the Result
box's status line, never a heading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QComboBox, QLabel

from engine.remote.client import TargetClient
from engine.remote.inferdeck_form import fetch_inferdeck_form, raw_form
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
from gui.predict.predict_view import PredictView, stage_line
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
        self._wanted: str | None = None  # the last `use_target` choice
        self.source_box = QComboBox()
        self.source_box.setObjectName("sendTo")
        self.source_box.addItem(LOCAL)
        self.source_box.setToolTip(
            "Where the prediction goes: the local engine, or a stored target "
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
        if self._wanted is not None and self._wanted not in self.targets:
            listed = {s.target.name for s in targets}
            if self._wanted in listed:  # the side pane chose it before it was listed here
                current, before, self._wanted = self._wanted, None, None
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

    def use_target(self, name: str | None) -> None:
        """Show the local form (None) or the stored target `name`'s; the "Send to" choice
        follows (the window's side pane calls this). An unknown name means the local engine."""
        self._wanted = name  # a target not listed yet is chosen once `set_targets` lists it
        wanted = name if name is not None and name in self.targets else LOCAL
        if self.source_box.currentText() != wanted:
            self.source_box.setCurrentText(wanted)  # -> _chosen
        elif wanted != LOCAL and self.form is None and self.client is None:
            self._chosen(wanted)  # chosen before, but its form never came: try again

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
            self.view.clear_result()
            return None
        target = stored.target
        if target.protocol == "json":
            form = raw_form(target.name, target.model)
        else:
            self.view.show_message(f"reading {target.model}'s inputs from {name}…")
            form = None
        client = TargetClient(
            target, token=self.tokens.get(target.name), max_connections=4, trace_every=1
        )
        if form is None:
            try:
                if target.protocol == "oip":
                    form = await fetch_oip_form(client)
                else:
                    form = await fetch_inferdeck_form(client)
            except ProtocolError as exc:
                await client.aclose()
                if generation == self._generation:
                    self.view.show_message(f"{name}: {exc}", error=True)
                return None
        if generation != self._generation:  # chosen away while the metadata was on its way
            await client.aclose()
            return None
        self.client, self.form = client, form
        self.view.use_form(form)
        if form.raw:
            self.view.show_message(f"{name} takes a JSON body (no form: it has no metadata)")
        else:
            self.view.show_message(f"{target.model} on {name}: {len(form.fields)} inputs")
        return form

    async def predict(self, raw: dict[str, Any]) -> RemoteAnswer | None:
        """Send the form's payload to the chosen target; show and return what came back."""
        client, form = self.client, self.form
        if client is None or form is None:
            self.view.show_message("no remote target chosen", error=True)
            return None
        try:
            payload = form.inputs.model_validate(raw).model_dump(by_alias=True, exclude_none=True)
            if form.raw:
                payload = payload["body"]  # the document itself is the payload
            adapter = adapter_for(client.target, form)
        except (ValidationError, ProtocolError) as exc:
            self.view.show_message(str(exc), error=True)
            return None
        answer = await send_prediction(client, adapter, payload, db=self.db, run=self.run)
        self.answers += 1
        self._show(answer, client.target.name, form)
        if self.on_stored is not None:
            self.on_stored(answer)
        return answer

    def _show(self, answer: RemoteAnswer, target: str, form: RemoteForm) -> None:
        request = f"request {answer.request_id} → {target}"
        stages = stage_line(answer.latency_us, answer.spans)
        if answer.status != "ok":
            self.view.show_message(refusal_text(answer, target), error=True)
            self.view.stages_text.setText(stages)
            self.view.request_text.setText(request)
            return
        label, scores, rows = summarize_outputs(answer.answer, form.labels)
        self.view.show_answer(label, scores, rows, stages=stages, request=request)

    async def _close_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    async def aclose(self) -> None:
        self._generation += 1
        await self._close_client()


Scores = list[tuple[str, float]]


def summarize_outputs(
    answer: Any, labels: Sequence[str] = ()
) -> tuple[str, Scores, list[tuple[str, str]]]:
    """A remote answer as the Predict view shows one: a heading (the top label), a score per
    class, and any other outputs as text rows.

    - `inferdeck`: `{"outputs": {"label": ..., "scores": {class: score}}}`, or a regressor's
      `{"outputs": {"values": {name: number}}}` (a text row per name);
    - OIP: a `label` tensor and a `scores` tensor, its values named by `labels` (the model's,
      when the target gives them; else "class 0", "class 1"...); other tensors are text rows;
    - anything else (a `json` target's answer): "ok" and the answer as one text row.
    """
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if isinstance(outputs, dict):
        return _labelled(outputs)
    if not isinstance(outputs, list):
        text = orjson.dumps(answer).decode() if answer is not None else ""
        return "ok", [], ([("answer", _cut(text))] if text else [])
    label: str | None = None
    scores: Scores = []
    rows: list[tuple[str, str]] = []
    for out in outputs:
        if not isinstance(out, dict):
            continue
        data = out.get("data", [])
        name = str(out.get("name", "?"))
        values = data if isinstance(data, list) else [data]
        if name == "label" and values:
            label = str(values[0])
            continue
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if name == "scores" and numbers and len(numbers) == len(values):
            names = list(labels) if len(labels) == len(numbers) else []
            scores = [
                (names[i] if names else f"class {i}", float(v)) for i, v in enumerate(numbers)
            ]
            continue
        shown = ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values[:16])
        if len(values) > 16:
            shown += f", … ({len(values)} values)"
        rows.append((name, shown))
    if label is None:
        label = max(scores, key=lambda kv: kv[1])[0] if scores else "ok"
    return label, scores, rows


def _labelled(outputs: dict[str, Any]) -> tuple[str, Scores, list[tuple[str, str]]]:
    raw = outputs.get("scores")
    scores: Scores = []
    if isinstance(raw, dict):
        scores = [(str(k), float(v)) for k, v in raw.items() if isinstance(v, int | float)]
    label = outputs.get("label")
    if label is None:
        label = max(scores, key=lambda kv: kv[1])[0] if scores else "ok"
    rows: list[tuple[str, str]] = []
    for key, value in outputs.items():
        if key in ("label", "scores"):
            continue
        if key == "values" and isinstance(value, dict):  # a regressor's named numbers
            rows.extend(
                (str(k), _cut(f"{v:.7g}" if isinstance(v, float) else str(v)))
                for k, v in value.items()
            )
        else:
            rows.append((str(key), _cut(str(value))))
    return str(label), scores, rows


def refusal_text(answer: RemoteAnswer, target: str) -> str:
    """Why a request failed, in the server's words where it gave some: this project's envelope
    (`{"error": {"message": ...}}`) and OIP's (`{"error": "..."}`), else the stored failure."""
    error = answer.answer.get("error") if isinstance(answer.answer, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    if isinstance(error, str) and error and answer.http_status:
        return f"{target} refused it (HTTP {answer.http_status}): {_cut(error)}"
    return f"{target}: {_cut(answer.error or 'failed')}"


def _cut(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
