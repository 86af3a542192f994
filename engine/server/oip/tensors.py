"""OIP tensors in and out: a request body checked into tensors, the tensors split into one
`input_payload` per batch row, and the rows' results gathered into output tensors (a
classifier's `label` and `scores`, a regressor's one tensor per output; see `schema`).

Parsing is by hand rather than through the documented pydantic shapes (`schema`), so that every
refusal is an `OipError` whose message names the tensor, row or field a caller must fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.models.runtime import LoadedModel
from engine.server.errors import Refusal, status_for
from engine.server.oip.schema import (
    COMBINED_INPUT,
    DATATYPES,
    FLOAT_TYPES,
    INT_RANGES,
    NUMERIC_TYPES,
    TensorSpec,
    input_specs,
    output_specs,
)
from engine.work import Work

CLIENT_ID = "oip"
MAX_METADATA_CHARS = 256
MAX_SHOWN_CHARS = 80  # a caller's value quoted in an error message is cut to this


class OipError(Refusal):
    """A request the protocol refuses; the message goes to the caller as `{"error": ...}`.
    Raised while parsing and running an infer; the app's refusal handler answers it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__("oip", message, status)


@dataclass(slots=True)
class Tensor:
    """One input tensor as `parse_request` checked it; `rows_from` splits it into rows."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]  # flat, row-major


@dataclass(slots=True)
class InferRequest:
    """An infer body as `parse_request` checked it: the OIP `id`, the inputs, the outputs wanted."""

    id: str | None
    inputs: list[Tensor]
    outputs: list[str] | None
    binary_default: bool = False  # the request's `binary_data_output`
    output_binary: dict[str, bool] = field(default_factory=dict)  # an output's `binary_data`

    def binary_outputs(self, names: list[str]) -> set[str]:
        """Which of the answer's outputs `names` go as binary data."""
        return {n for n in names if self.output_binary.get(n, self.binary_default)}


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


def _parameters(parameters: Any, where: str) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise OipError(f"{where}: parameters must be an object")
    return parameters


def _wants_binary(parameters: dict[str, Any], key: str, where: str) -> bool | None:
    value = parameters.get(key)
    if value is not None and not isinstance(value, bool):
        raise OipError(f"{where}: {key} must be true or false")
    return value


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


def shown(value: Any) -> str:
    """A caller's value for an error message: its repr, cut short (it may be any JSON)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def element_count(shape: list[int], most: int) -> int | None:
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
            f"input {name!r}: datatype {shown(datatype)} is not one of "
            f"{', '.join(sorted(DATATYPES))}"
        )
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise OipError(f"input {name!r}: shape must be a list of non-negative integers")
    if "binary_data_size" in _parameters(raw.get("parameters"), f"input {name!r}"):
        # (`binary.with_binary_inputs` takes it out when the header says where the bytes are)
        raise OipError(
            f"input {name!r}: binary_data_size needs the Inference-Header-Content-Length header"
        )
    if not isinstance(data, list):
        raise OipError(f"input {name!r}: data must be a list (flat or nested)")
    flat = _flatten(data)
    count = element_count(shape, len(flat))
    if count != len(flat):
        holds = f"more than {len(flat)}" if count is None else str(count)
        raise OipError(
            f"input {name!r}: shape {shown(shape)} holds {holds} elements, but data has {len(flat)}"
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
    parameters = _parameters(value.get("parameters"), "request")
    binary_default = _wants_binary(parameters, "binary_data_output", "request") or False
    raw_inputs = value.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise OipError("inputs must be a non-empty list")
    inputs = [_tensor(raw, i) for i, raw in enumerate(raw_inputs)]
    raw_outputs = value.get("outputs")
    outputs: list[str] | None = None
    output_binary: dict[str, bool] = {}
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise OipError("outputs must be a list")
        outputs = []
        for i, raw in enumerate(raw_outputs):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise OipError(f"outputs[{i}] must be an object with a name")
            where = f"output {raw['name']!r}"
            if raw["name"] in outputs:
                raise OipError(f"{where} is asked for twice")
            wanted = _wants_binary(_parameters(raw.get("parameters"), where), "binary_data", where)
            if wanted is not None:
                output_binary[raw["name"]] = wanted
            outputs.append(raw["name"])
    return InferRequest(request_id, inputs, outputs, binary_default, output_binary)


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
                f"input {tensor.name!r}: shape {shown(tensor.shape)} does not match "
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
            if len(spec.fields) > 1 or spec.fields[0].name != name:
                # The combined `input` tensor, of one field's model too (a regressor's
                # `celsius`): its values go to the fields it carries, not to `input`.
                row.update(zip((f.name for f in spec.fields), values, strict=True))
            elif spec.fields[0].type == "image":
                row[name] = values
            else:
                row[name] = values[0]
    return rows


def row_request(model: LoadedModel, payload: dict[str, Any], oip_id: str | None, row: int) -> bytes:
    """One batch row as the full request the engine takes from client `oip`, with the OIP
    `id` and the row's place kept in its metadata."""
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


def batch_refusal(done: list[tuple[int, Work]], batch: int) -> OipError | None:
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


def _output_data(model: LoadedModel, name: str, results: list[dict[str, Any]]) -> list[Any]:
    """One output tensor's `data`, flat in row order, from the engine's answers: a
    classifier's `{"label", "scores"}`, a regressor's `{"values": {name: number}}`."""
    if not model.manifest.is_classifier:
        return [r["values"][name] for r in results]
    if name == "label":
        return [r["label"] for r in results]
    return [r["scores"][label] for r in results for label in model.labels]


def response_body(model: LoadedModel, request: InferRequest, done: list[Work]) -> dict[str, Any]:
    """OIP's infer answer: the rows' results as the model's output tensors (`output_specs`),
    in row order; only those the request asked for, in its order, when it named some (the
    dataplane has refused names the model does not give)."""
    results = [work.output for work in done if work.output is not None]
    specs = output_specs(model)
    chosen = request.outputs if request.outputs is not None else list(specs)
    body: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [
            {
                "name": name,
                "datatype": specs[name].datatype,
                "shape": [len(results), *specs[name].shape[1:]],
                "data": _output_data(model, name, results),
            }
            for name in chosen
        ],
    }
    if request.id is not None:
        body["id"] = request.id
    return body
