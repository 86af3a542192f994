"""Open Inference Protocol v2 (KServe v2, Triton, MLServer) over the loaded models.

OIP callers send tensors; each model's manifest decides which tensors it takes: one per input
field (named like the field), or, for models whose fields are all numbers, a single `input`
tensor of shape `[-1, fields]` in the manifest's field order. A batch is split into rows and
every row goes through `Engine.predict_json` as a full request from client `oip`, so it is
validated, traced and stored exactly like a `/predict` request. Errors follow OIP:
`{"error": "<message>"}` with a 4xx/5xx status, not this service's envelope, on every `/v2`
path (unknown ones included).

A batch is all or nothing: every row is checked before any is run, and one bad row refuses the
whole request (only the rejections are stored); a batch with more rows than the engine's queue
holds (`max_batch_size`, advertised in the model metadata's `parameters`) is refused with a 400
before anything runs, and one that does not fit in the queue's free room gets a 503 before
anything runs, rather than running the rows that fit and refusing the rest. The OIP `id` is the
caller's correlation ID, which KServe and Triton let clients reuse: it is echoed and kept in
each stored row's metadata (`oip_id`), while the rows take their IDs from `X-Request-ID` or
the server.
"""

from __future__ import annotations

import importlib.metadata
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import orjson
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.responses import Response

from engine.ids import new_id
from engine.models.manifest import FieldSpec
from engine.models.runtime import LoadedModel
from engine.pipeline import Engine, Origin
from engine.server.errors import RETRY_AFTER_S, json_response, status_for
from engine.server.state import Running, read_body, running
from engine.server.tracing import server_timing
from engine.validation import RowValidator, Validated
from engine.work import Work

PLATFORM = "pytorch_torchexport"
COMBINED_INPUT = "input"
CLIENT_ID = "oip"
MAX_BODY_BYTES = 1 << 20  # ServerSettings' default; the edge layer enforces the configured one
MAX_ID_CHARS = 64
MAX_METADATA_CHARS = 256
MAX_SHOWN_CHARS = 80  # a caller's value quoted in an error message is cut to this
INFER_PATHS = (
    "/v2/models/{model_name}/infer",
    "/v2/models/{model_name}/versions/{model_version}/infer",
)

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
INT_RANGES: dict[str, tuple[int, int]] = {
    **{f"INT{bits}": (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, (1 << bits) - 1) for bits in (8, 16, 32, 64)},
}
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
NUMERIC_TYPES = frozenset(INT_RANGES) | FLOAT_TYPES
DATATYPES: frozenset[str] = frozenset(get_args(Datatype))
assert NUMERIC_TYPES | {"BOOL", "BYTES"} == DATATYPES


def is_oip_path(path: str) -> bool:
    """Whether an error on `path` is answered in OIP's shape rather than the envelope."""
    return path == "/v2" or path.startswith("/v2/")


class OipError(Exception):
    """A request the protocol refuses; the message goes to the caller as `{"error": ...}`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_response(message: str, status: int) -> Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return json_response({"error": message}, status, headers)


# -- the shapes in the OpenAPI document --------------------------------------------------------
# Documentation only: `parse_request` checks bodies itself, so that a refusal reads as OIP's
# `{"error": msg}` with a message a tensor-minded caller can act on.


class _Doc(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class OipTensorMetadata(_Doc):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 marks the batch dimension")


class OipModelParameters(_Doc):
    max_batch_size: int = Field(description="the most rows one infer request may carry")


class OipModelMetadata(_Doc):
    name: str
    versions: list[str]
    platform: str
    inputs: list[OipTensorMetadata]
    outputs: list[OipTensorMetadata]
    parameters: OipModelParameters


class OipRequestInput(_Doc):
    """One input tensor: `data` flat in row-major order, or nested to follow `shape`."""

    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class OipRequestOutput(_Doc):
    name: str
    parameters: dict[str, Any] | None = None


class OipInferenceRequest(_Doc):
    """An OIP v2 inference request. See `GET /v2/models/{model_name}` for the tensors a model
    takes; every row of a batch is validated before any is run."""

    id: str | None = Field(None, description="the caller's correlation ID, echoed back")
    parameters: dict[str, Any] | None = None
    inputs: list[OipRequestInput] = Field(min_length=1)
    outputs: list[OipRequestOutput] | None = Field(
        None, description="the outputs wanted (default: all)"
    )


class OipResponseOutput(_Doc):
    name: str
    datatype: Datatype
    shape: list[int]
    data: list[Any]


class OipInferenceResponse(_Doc):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OipResponseOutput]


class OipErrorBody(_Doc):
    error: str


OIP_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OipErrorBody, "description": what}
    for code, what in (
        (400, "invalid request: names the tensor, row or field"),
        (404, "unknown model or version"),
        (409, "X-Request-ID already used"),
        (413, "body too large"),
        (500, "internal error (no internals are shown)"),
        (503, "overloaded (with Retry-After) or not ready"),
    )
}


def document_infer_body(document: dict[str, Any], ref_template: str) -> None:
    """Put the infer request's schema into an OpenAPI `document` (its routes read raw bodies,
    so FastAPI has no body model to document)."""
    refs, top = models_json_schema([(OipInferenceRequest, "validation")], ref_template=ref_template)
    document.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
    body = {
        "required": True,
        "content": {"application/json": {"schema": refs[(OipInferenceRequest, "validation")]}},
    }
    for path in INFER_PATHS:
        operation = document.get("paths", {}).get(path, {}).get("post")
        if operation is not None:
            operation["requestBody"] = body


# -- what each model takes and gives ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor a model declares; `shape[0]` is the batch dimension (-1)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    fields: tuple[FieldSpec, ...] = ()  # the manifest fields it carries, in order

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @property
    def row_elements(self) -> int:
        return math.prod(self.shape[1:])


_FIELD_DATATYPES = {"float": "FP32", "int": "INT64", "bool": "BOOL", "enum": "BYTES"}


def _field_tensor(spec: FieldSpec) -> TensorSpec:
    if spec.type == "image":
        assert spec.shape is not None
        return TensorSpec(spec.name, "FP32", (-1, *spec.shape), (spec,))
    return TensorSpec(spec.name, _FIELD_DATATYPES[spec.type], (-1, 1), (spec,))


def input_specs(model: LoadedModel) -> dict[str, TensorSpec]:
    """Per-field tensors, plus the combined `input` tensor where every field is a number."""
    fields = model.manifest.inputs
    specs = {spec.name: _field_tensor(spec) for spec in fields}
    if all(s.type in ("float", "int") for s in fields) and COMBINED_INPUT not in specs:
        specs[COMBINED_INPUT] = TensorSpec(COMBINED_INPUT, "FP32", (-1, len(fields)), tuple(fields))
    return specs


def output_specs(model: LoadedModel) -> dict[str, TensorSpec]:
    return {
        "label": TensorSpec("label", "BYTES", (-1, 1)),
        "scores": TensorSpec("scores", "FP32", (-1, len(model.labels))),
    }


def model_metadata(model: LoadedModel, max_batch_size: int) -> dict[str, Any]:
    """OIP model metadata; `parameters.max_batch_size` is the largest batch `infer` takes
    (Triton's model configuration names the same limit `max_batch_size`)."""
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [spec.metadata() for spec in input_specs(model).values()],
        "outputs": [spec.metadata() for spec in output_specs(model).values()],
        "parameters": {"max_batch_size": max_batch_size},
    }


# -- parsing a request -----------------------------------------------------------------------------


@dataclass(slots=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]  # flat, row-major


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[str] | None


def _flatten(value: list[Any]) -> list[Any]:
    """The values of a flat or nested list in row-major order. A loop, not recursion: JSON
    nested a thousand levels deep would otherwise exhaust the stack (a 500, not a 400)."""
    flat: list[Any] = []
    stack = [iter(value)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _no_binary(parameters: Any, where: str) -> None:
    if parameters is None:
        return
    if not isinstance(parameters, dict):
        raise OipError(f"{where}: parameters must be an object")
    if "binary_data_size" in parameters or parameters.get("binary_data") is True:
        raise OipError(f"{where}: binary tensor data is not supported; send JSON data")


def _check_values(tensor: Tensor) -> None:
    kind = tensor.datatype
    where = f"input {tensor.name!r}"
    if kind in FLOAT_TYPES:
        for value in tensor.data:
            # bool is an int in Python, but `true` in an FP32 tensor is a caller's mistake.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OipError(f"{where}: {kind} data must be numbers, got {value!r}")
    elif kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        for value in tensor.data:
            if isinstance(value, bool) or not isinstance(value, int):
                raise OipError(f"{where}: {kind} data must be integers, got {value!r}")
            if not low <= value <= high:
                raise OipError(f"{where}: {value} is out of range for {kind}")
    elif kind == "BOOL":
        for value in tensor.data:
            if not isinstance(value, bool):
                raise OipError(f"{where}: BOOL data must be true or false, got {value!r}")
    else:
        for value in tensor.data:
            if not isinstance(value, str):
                raise OipError(f"{where}: BYTES data must be strings, got {value!r}")


def _shown(value: Any) -> str:
    """A caller's value for an error message: its repr, cut short (it may be any JSON)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _element_count(shape: list[int], most: int) -> int | None:
    """The number of elements `shape` holds, or None when it is over `most`.

    Multiplied step by step with an early stop: the full product of a long list of 64-bit
    dimensions is a number of thousands of digits, slow to compute and too long to print."""
    if 0 in shape:
        return 0
    count = 1
    for size in shape:
        count *= size
        if count > most:
            return None
    return count


def _tensor(raw: Any, index: int) -> Tensor:
    if not isinstance(raw, dict):
        raise OipError(f"inputs[{index}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise OipError(f"inputs[{index}]: name must be a non-empty string")
    datatype, shape, data = raw.get("datatype"), raw.get("shape"), raw.get("data")
    # `isinstance` first: an object or a list is not hashable, so `in` would raise.
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise OipError(
            f"input {name!r}: datatype {_shown(datatype)} is not one of "
            f"{', '.join(sorted(DATATYPES))}"
        )
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise OipError(f"input {name!r}: shape must be a list of non-negative integers")
    if not isinstance(data, list):
        raise OipError(f"input {name!r}: data must be a list (flat or nested)")
    _no_binary(raw.get("parameters"), f"input {name!r}")
    flat = _flatten(data)
    count = _element_count(shape, len(flat))
    if count != len(flat):
        holds = f"more than {len(flat)}" if count is None else str(count)
        raise OipError(
            f"input {name!r}: shape {_shown(shape)} holds {holds} elements, "
            f"but data has {len(flat)}"
        )
    tensor = Tensor(name, datatype, shape, flat)
    _check_values(tensor)
    return tensor


def parse_request(body: bytes) -> InferRequest:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OipError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise OipError("the body must be a JSON object")
    request_id = value.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OipError("id must be a string")
    _no_binary(value.get("parameters"), "request")
    if (value.get("parameters") or {}).get("binary_data_output") is True:
        raise OipError("binary output data is not supported")
    raw_inputs = value.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise OipError("inputs must be a non-empty list")
    inputs = [_tensor(raw, i) for i, raw in enumerate(raw_inputs)]
    raw_outputs = value.get("outputs")
    outputs: list[str] | None = None
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise OipError("outputs must be a list")
        outputs = []
        for i, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise OipError(f"outputs[{i}] must be an object with a name")
            _no_binary(raw.get("parameters"), f"output {raw['name']!r}")
            outputs.append(raw["name"])
    return InferRequest(request_id, inputs, outputs)


# -- tensors to rows and back ----------------------------------------------------------------------


def _fits(tensor: Tensor, spec: TensorSpec) -> bool:
    wanted = list(spec.shape[1:])
    if tensor.shape[1:] == wanted:
        return True
    # Many clients send a one-value-per-row column as shape [n] rather than [n, 1].
    return wanted == [1] and len(tensor.shape) == 1


def _datatype_fits(tensor: Tensor, spec: TensorSpec) -> bool:
    if spec.datatype in NUMERIC_TYPES:
        return tensor.datatype in NUMERIC_TYPES
    return tensor.datatype == spec.datatype


def rows_from(
    model: LoadedModel, inputs: list[Tensor], max_rows: int | None = None
) -> list[dict[str, Any]]:
    """One `input_payload` per batch row; raises `OipError` for tensors the model cannot take
    and for a batch of more than `max_rows` rows."""
    specs = input_specs(model)
    by_name: dict[str, Tensor] = {}
    for tensor in inputs:
        spec = specs.get(tensor.name)
        if spec is None:
            raise OipError(
                f"model {model.name!r} has no input {tensor.name!r}; it takes {', '.join(specs)}"
            )
        if tensor.name in by_name:
            raise OipError(f"input {tensor.name!r} is given twice")
        if not _datatype_fits(tensor, spec):
            raise OipError(
                f"input {tensor.name!r}: datatype {tensor.datatype} does not fit "
                f"{spec.datatype} {list(spec.shape)}"
            )
        if not _fits(tensor, spec):
            raise OipError(
                f"input {tensor.name!r}: shape {_shown(tensor.shape)} does not match "
                f"{list(spec.shape)}"
            )
        by_name[tensor.name] = tensor
    if COMBINED_INPUT in by_name and len(by_name) > 1:
        raise OipError(f"send either {COMBINED_INPUT!r} or the per-field inputs, not both")
    if COMBINED_INPUT not in by_name:
        missing = [
            f.name for f in model.manifest.inputs if f.name not in by_name and f.default is None
        ]
        if missing:
            raise OipError(f"model {model.name!r} is missing input(s) {', '.join(missing)}")
    batches = {t.shape[0] for t in by_name.values()}
    if len(batches) > 1:
        raise OipError(f"the inputs disagree on the batch size: {sorted(batches)}")
    count = batches.pop()
    if count == 0:
        raise OipError("the batch is empty")
    if max_rows is not None and count > max_rows:
        # Every row of a batch must fit in the queue at once: a larger one would run the rows
        # that fit, refuse the rest, and be refused the same way on every retry.
        raise OipError(
            f"the batch has {count:,} rows; the limit is {max_rows:,} rows per request "
            f"(max_batch_size in the model metadata's parameters): split it"
        )
    rows: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, tensor in by_name.items():
        spec = specs[name]
        per_row = spec.row_elements
        for i, row in enumerate(rows):
            values = tensor.data[i * per_row : (i + 1) * per_row]
            if len(spec.fields) > 1:
                row.update(zip((f.name for f in spec.fields), values, strict=True))
            elif spec.fields[0].type == "image":
                row[name] = values
            else:
                row[name] = values[0]
    return rows


def _row_ids(request: Request, count: int) -> tuple[list[str], bool]:
    """The engine request IDs for a batch's rows, and whether the caller chose them.

    Rows are named after the `X-Request-ID` (the caller's, or the one made at the edge), never
    after the OIP `id`: clients may reuse that one for every request (KServe and Triton treat
    it as an opaque correlation value), and a stored row's ID must be unique. Rows of a batch
    get `.0`, `.1`, ... so each has its own."""
    base, chosen = request.state.request_id, request.state.caller_chose_id
    if count == 1:
        return [base], chosen
    if len(base) + len(str(count - 1)) + 1 <= MAX_ID_CHARS:
        return [f"{base}.{i}" for i in range(count)], chosen
    # A caller's 64-character X-Request-ID leaves no room for row suffixes: name rows here.
    return [new_id() for _ in range(count)], False


def _row_body(model: LoadedModel, payload: dict[str, Any], oip_id: str | None, row: int) -> bytes:
    metadata: dict[str, Any] = {"protocol": "oip", "oip_row": row}
    if oip_id is not None:
        metadata["oip_id"] = oip_id[:MAX_METADATA_CHARS]
    return orjson.dumps(
        {
            "client_id": CLIENT_ID,
            "model": model.name,
            "input_payload": payload,
            "metadata": metadata,
        }
    )


def _refusal(done: list[tuple[int, Work]], batch: int) -> OipError | None:
    """The first row (of `batch`) that did not succeed, as the whole request's error."""
    refused = [(i, work) for i, work in done if work.status != "ok"]
    if not refused:
        return None
    i, work = refused[0]
    where = f"row {i}: " if batch > 1 else ""
    more = f" (+{len(refused) - 1} more rows refused)" if len(refused) > 1 else ""
    if work.status == "failed" or work.error is None:
        # The stored row keeps the reason; a caller gets no internals.
        return OipError(f"{where}the request could not be completed{more}", 500)
    status = status_for(work.error.code)
    message = work.error.message.removeprefix("input_payload.")
    return OipError(f"{where}{message}{more}", 400 if status == 422 else status)


def response_body(model: LoadedModel, request: InferRequest, done: list[Work]) -> dict[str, Any]:
    labels = model.labels
    results = [work.output for work in done if work.output is not None]
    outputs: dict[str, dict[str, Any]] = {
        "label": {
            "name": "label",
            "datatype": "BYTES",
            "shape": [len(results), 1],
            "data": [r["label"] for r in results],
        },
        "scores": {
            "name": "scores",
            "datatype": "FP32",
            "shape": [len(results), len(labels)],
            "data": [r["scores"][label] for r in results for label in labels],
        },
    }
    chosen = request.outputs if request.outputs is not None else list(outputs)
    body: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [outputs[name] for name in chosen],
    }
    if request.id is not None:
        body["id"] = request.id
    return body


def max_batch_size(engine: Engine) -> int:
    """The most rows one infer request may carry: as many as the engine's queue holds."""
    return engine.queue.capacity


async def infer(
    engine: Engine, origin: Origin, model: LoadedModel, body: bytes, request: Request
) -> Response:
    """Parse, split into rows, run every row through the engine at once, gather the outputs."""
    try:
        parsed = parse_request(body)
        unknown = [n for n in parsed.outputs or () if n not in output_specs(model)]
        if unknown:
            raise OipError(f"model {model.name!r} has no output(s) {', '.join(unknown)}")
        rows = rows_from(model, parsed.inputs, max_batch_size(engine))
    except OipError as exc:
        return error_response(exc.message, exc.status)
    if len(rows) > 1 and len(rows) > engine.queue.capacity - len(engine.queue):
        # Refused whole while nothing has run: admitted row by row, the rows that found room
        # would run and be stored under a 503 the caller retries.
        return error_response(
            f"the server is at capacity for a batch of {len(rows):,} rows; try again shortly",
            503,
        )
    ids, chosen = _row_ids(request, len(rows))
    bodies = [_row_body(model, row, parsed.id, i) for i, row in enumerate(rows)]
    # Every row is checked before any is run, so a 400 never hides rows that were run and
    # stored. The engine's own validator on the same bytes: the engine rejects exactly these
    # rows again (and stores the rejections), while the valid rows of the batch are not sent.
    validator = RowValidator(engine.registry, None, requests_only=True)
    invalid = [i for i, b in enumerate(bodies) if not isinstance(validator.validate(b), Validated)]
    chosen_rows = invalid or range(len(rows))
    # Admitted all at once or refused whole (the check of free room above is only a fast path).
    done = await engine.predict_json_batch(
        [bodies[i] for i in chosen_rows],
        origin,
        request_ids=[ids[i] if chosen else None for i in chosen_rows],
        own_ids=[None if chosen else ids[i] for i in chosen_rows],
    )
    refused = _refusal(list(zip(chosen_rows, done, strict=True)), len(rows))
    if refused is not None:
        if invalid and len(rows) > 1:
            refused.message += "; no row of the batch was run"
        return error_response(refused.message, refused.status)
    # Server-Timing as /predict gives it, from the slowest row: the answer waited for it.
    slowest = max(done, key=lambda work: work.latency_us or 0)
    timing = {"server-timing": server_timing(slowest.spans)}
    return json_response(response_body(model, parsed, done), 200, timing)


# -- routes ----------------------------------------------------------------------------------------


def _server_version() -> str:
    try:
        return importlib.metadata.version("inferdeck")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0"


def add_oip_routes(app: FastAPI, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    """Mount the OIP v2 endpoints on `app` (whose `state.running` the lifespan fills)."""
    version = _server_version()
    not_ready = "models are still loading"
    lookup_docs: dict[int | str, dict[str, Any]] = {c: OIP_ERRORS[c] for c in (404, 503)}
    metadata_docs: dict[int | str, dict[str, Any]] = {
        200: {"model": OipModelMetadata},
        **lookup_docs,
    }
    infer_docs: dict[int | str, dict[str, Any]] = {
        200: {"model": OipInferenceResponse},
        **OIP_ERRORS,
    }

    def lookup(
        request: Request, name: str, model_version: str | None
    ) -> tuple[Running, LoadedModel] | Response:
        live = running(request)
        if live is None:
            return error_response(not_ready, 503)
        model = live.engine.registry.get(name)
        if model is None:
            return error_response(f"unknown model {name!r}", 404)
        if model_version is not None and model_version != model.version:
            return error_response(f"model {name!r} has no version {model_version!r}", 404)
        request.state.model = model.name
        return live, model

    @app.get("/v2", tags=["oip"])
    async def server_metadata() -> Response:
        """OIP server metadata."""
        return json_response({"name": "inferdeck", "version": version, "extensions": []})

    @app.get("/v2/health/live", tags=["oip"])
    async def server_live() -> Response:
        """OIP liveness: the process answers."""
        return json_response({"live": True})

    @app.get("/v2/health/ready", tags=["oip"])
    async def server_ready(request: Request) -> Response:
        """OIP readiness: models loaded and warm, and requests can be stored (as `/ready`)."""
        live = running(request)
        if live is None or await live.engine.storage_problem() is not None:
            return json_response({"ready": False}, 503, {"Retry-After": str(RETRY_AFTER_S)})
        return json_response({"ready": True})

    async def metadata(request: Request, model_name: str, model_version: str | None) -> Response:
        found = lookup(request, model_name, model_version)
        if isinstance(found, Response):
            return found
        live, model = found
        return json_response(model_metadata(model, max_batch_size(live.engine)))

    async def ready(request: Request, model_name: str, model_version: str | None) -> Response:
        found = lookup(request, model_name, model_version)
        if isinstance(found, Response):
            return found
        return json_response({"name": found[1].name, "ready": True})

    async def run(request: Request, model_name: str, model_version: str | None) -> Response:
        found = lookup(request, model_name, model_version)
        if isinstance(found, Response):
            return found
        live, model = found
        if request.headers.get("inference-header-content-length") is not None:
            return error_response("binary tensor data is not supported; send JSON", 400)
        body = await read_body(request, max_body_bytes)
        if body is None:
            return error_response(f"the body is over {max_body_bytes:,} bytes", 413)
        return await infer(live.engine, live.origin, model, body, request)

    @app.get("/v2/models/{model_name}", tags=["oip"], responses=metadata_docs)
    async def model_metadata_route(request: Request, model_name: str) -> Response:
        """OIP model metadata: the tensors the model takes and gives."""
        return await metadata(request, model_name, None)

    @app.get(
        "/v2/models/{model_name}/versions/{model_version}", tags=["oip"], responses=metadata_docs
    )
    async def model_version_metadata(
        request: Request, model_name: str, model_version: str
    ) -> Response:
        """OIP model metadata for one version."""
        return await metadata(request, model_name, model_version)

    @app.get("/v2/models/{model_name}/ready", tags=["oip"], responses=lookup_docs)
    async def model_ready(request: Request, model_name: str) -> Response:
        """OIP model readiness."""
        return await ready(request, model_name, None)

    @app.get(
        "/v2/models/{model_name}/versions/{model_version}/ready",
        tags=["oip"],
        responses=lookup_docs,
    )
    async def model_version_ready(
        request: Request, model_name: str, model_version: str
    ) -> Response:
        """OIP model readiness for one version."""
        return await ready(request, model_name, model_version)

    @app.post(INFER_PATHS[0], tags=["oip"], responses=infer_docs)
    async def model_infer(request: Request, model_name: str) -> Response:
        """OIP inference: tensors in, `label` and `scores` tensors out."""
        return await run(request, model_name, None)

    @app.post(INFER_PATHS[1], tags=["oip"], responses=infer_docs)
    async def model_version_infer(
        request: Request, model_name: str, model_version: str
    ) -> Response:
        """OIP inference against one version."""
        return await run(request, model_name, model_version)
