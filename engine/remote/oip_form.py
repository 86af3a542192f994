"""A predict form for a remote model, and one prediction sent to it, stored like a load request.

An OIP v2 server says what a model takes in `GET /v2/models/{m}`: tensors with a name, a
datatype and a shape. `form_from_oip` turns them into the two things the desktop form builder
uses for a local model: a list of fields (name, kind, choices, range) and a pydantic model whose
JSON schema and validation the form shows inline. A scalar tensor (`[-1, 1]`) is one number; a
wider one is a comma-separated list of exactly its row's size. A server may list alternatives
(this project's own lists one tensor per field *and* a combined `input`); as in
`engine.remote.examples`, the scalar tensors are then the form, and the wider ones are left out
of it (a whole-row tensor is another way to send the same fields, not one more field). The form
starts from `example_from_oip`'s values.

`send_prediction` posts one payload through the target's long-lived `TargetClient`, judges the
answer and builds its spans and row as the load runner does (`engine.remote.outcome`), and
writes the row (source `remote`) before returning: no answer is shown that is not stored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from engine.ids import new_id
from engine.remote.client import TargetClient, new_traceparent
from engine.remote.examples import example_from_oip
from engine.remote.outcome import (
    CLIENT_ROW_SUFFIX,
    INPUT_CAP,
    client_row,
    exchange_spans,
    failure_text,
    judge,
)
from engine.remote.protocols import (
    Adapter,
    OipInput,
    ProtocolError,
    fetch_oip_inputs,
    make_adapter,
    make_body,
)
from engine.remote.targets import Target
from engine.stats import RunRecorder
from storage import Database, queries

SOURCE = "remote"
CLIENT_ID = "gui"
FormKind = Literal["float", "int", "enum", "text", "json"]

_INT_BITS = {"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64}
_UINT_BITS = {"UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64}


@dataclass(frozen=True, slots=True)
class FormField:
    """One input as the form builder sees it (the same attributes as a manifest's FieldSpec)."""

    name: str
    type: FormKind
    choices: list[str] | None = None
    description: str = ""


@dataclass(frozen=True)
class RemoteForm:
    """A remote model's predict form (`form_from_oip`, `engine.remote.inferdeck_form`): fields
    for the form builder and the pydantic model that validates them; the desktop app's
    `RemotePredict` shows it."""

    target: str
    model: str
    fields: list[FormField]
    inputs: type[BaseModel]  # validates a payload keyed by tensor (or field) name
    tensors: tuple[OipInput, ...]
    labels: tuple[str, ...] = ()  # the classes, in the order of a scores tensor, when known
    example: dict[str, Any] = field(default_factory=dict)  # what the form starts from
    raw: bool = False  # one JSON body field: its validated `body` is the whole payload
    note: str = ""  # a sentence shown above the form (what this target takes)


def not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


def number_list(size: int | None, cast: type[float] | type[int]) -> Any:
    """`"1, 2.5, 3"` (or a list) to a list of `size` numbers."""

    def parse(value: Any) -> list[Any]:
        if isinstance(value, str):
            parts = [p for p in value.replace(";", ",").replace(" ", ",").split(",") if p]
            try:
                value = [cast(p) for p in parts]
            except ValueError as exc:
                raise ValueError("expected numbers separated by commas") from exc
        if not isinstance(value, list):
            raise ValueError("expected a list of numbers")
        if size is not None and len(value) != size:
            raise ValueError(f"expected {size} values, got {len(value)}")
        if cast is float and not all(math.isfinite(float(v)) for v in value):
            raise ValueError("values must be finite numbers")
        return list(value)

    return parse


def _scalar_annotation(datatype: str) -> tuple[FormKind, Any, list[str] | None]:
    # 64-bit ranges are left to the server: a form's "-9.2e+18 – 9.2e+18" helps nobody.
    if datatype in _INT_BITS:
        bits = _INT_BITS[datatype]
        low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if bits < 64 else (None, None)
        return "int", Annotated[int, Field(ge=low, le=high), BeforeValidator(not_bool)], None
    if datatype in _UINT_BITS:
        bits = _UINT_BITS[datatype]
        high = (1 << bits) - 1 if bits < 64 else None
        return "int", Annotated[int, Field(ge=0, le=high), BeforeValidator(not_bool)], None
    if datatype == "BOOL":
        return "enum", bool, ["false", "true"]
    if datatype == "BYTES":
        return "text", str, None
    return "float", Annotated[float, BeforeValidator(not_bool)], None


def _is_scalar(spec: OipInput) -> bool:
    return spec.shape[1:] in ((1,), ())


def form_from_oip(target: str, model: str, inputs: list[OipInput]) -> RemoteForm:
    """The form for a model's OIP inputs (see the module docstring for the rules)."""
    if not inputs:
        raise ProtocolError(f"model {model!r} declares no inputs")
    has_scalars = any(_is_scalar(spec) for spec in inputs)
    shown = [spec for spec in inputs if _is_scalar(spec) or not has_scalars]
    fields: list[FormField] = []
    model_fields: dict[str, Any] = {}
    for i, spec in enumerate(shown):
        row = spec.shape[1:]
        shape_text = "×".join("any" if d < 0 else str(d) for d in row) or "1"
        description = f"{spec.datatype} [{shape_text}]"
        if _is_scalar(spec):
            kind, annotation, choices = _scalar_annotation(spec.datatype)
        else:
            size = math.prod(row) if row and all(d > 0 for d in row) else None
            cast = int if spec.datatype in _INT_BITS or spec.datatype in _UINT_BITS else float
            kind, choices = "text", None
            annotation = Annotated[list[Any], BeforeValidator(number_list(size, cast))]
            description += " — numbers separated by commas"
        fields.append(FormField(spec.name, kind, choices, description))
        # Tensor names need not be Python names ("input-0"): fields are `f0`, `f1`... aliased.
        model_fields[f"f{i}"] = (
            annotation,
            Field(..., alias=spec.name, title=spec.name, description=description),
        )
    config = ConfigDict(extra="forbid", allow_inf_nan=False, title=f"{model} inputs")
    inputs_model = create_model("RemoteInputs", __config__=config, **model_fields)
    example = {
        name: ", ".join(str(v) for v in value) if isinstance(value, list) else value
        for name, value in example_from_oip(shown).items()
    }
    return RemoteForm(target, model, fields, inputs_model, tuple(inputs), example=example)


async def fetch_oip_form(client: TargetClient) -> RemoteForm:
    """Read the target's model metadata and build its form; `ProtocolError` says why not."""
    target = client.target
    inputs = await fetch_oip_inputs(client)
    assert target.model is not None  # (fetch_oip_inputs needs one)
    return form_from_oip(target.name, target.model, inputs)


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    """What `send_prediction` got back and stored, for the Predict view to show."""

    request_id: str  # the stored row's ID
    sent_id: str  # the X-Request-ID sent (the server's own row, on this project's service)
    status: Literal["ok", "failed"]
    http_status: int
    latency_us: int
    answer: Any  # the decoded JSON answer, or None
    error: str | None
    spans: list[tuple[Any, ...]]


def adapter_for(target: Target, form: RemoteForm | None) -> Adapter:
    """The adapter a prediction to `target` is sent through (an OIP target's needs its form)."""
    if target.protocol == "oip" and form is None:
        raise ProtocolError("an OIP target's form (its metadata) is needed first")
    return make_adapter(target, CLIENT_ID, list(form.tensors) if form is not None else None)


async def send_prediction(
    client: TargetClient,
    adapter: Adapter,
    payload: dict[str, Any],
    *,
    db: Database | None,
    run: RunRecorder | None = None,
    source: str = SOURCE,
    metadata: dict[str, Any] | None = None,
) -> RemoteAnswer:
    """Send one payload, store its row (committed before this returns), and say what came back.
    `source` and `metadata`: what the row says of where it came from (a run again's)."""
    target = client.target
    sent_id = new_id()
    traceparent = new_traceparent()
    body = make_body(adapter.prepare(payload), sent_id)
    epoch_us, origin_ns = time.time_ns() // 1000, time.perf_counter_ns()
    ex = await client.exchange(adapter.url, body, sent_id, traceparent, client.sample_next())
    judge(ex, adapter)
    status: Literal["ok", "failed"] = "ok" if ex.error is None else "failed"
    latency_us = (ex.end_ns - origin_ns) // 1000
    spans = exchange_spans(ex, origin_ns)
    try:
        answer = orjson.loads(ex.body) if ex.body else None
    except orjson.JSONDecodeError:
        answer = None
    row_id = sent_id + CLIENT_ROW_SUFFIX
    if run is not None:
        run.accepted += 1
        run.record(status, latency_us)
    if db is not None:
        row = client_row(
            row_id,
            run.run_id if run is not None else None,
            source,
            target.name,
            target.model,
            CLIENT_ID,
            status,
            epoch_us,
            epoch_us + latency_us,
            latency_us,
            orjson.dumps(payload).decode()[:INPUT_CAP],
            traceparent,
            ex,
            spans,
            metadata=metadata,
        )
        await db.writer.execute(queries.UPSERT_REQUEST, row)
    failure = failure_text(ex)
    return RemoteAnswer(row_id, sent_id, status, ex.status, latency_us, answer, failure, spans)
