"""Open Inference Protocol v2 shapes: the datatypes, the documented request and response
models, and the tensors each model takes and gives (its OIP metadata).

OIP callers send tensors; each model's manifest decides which tensors it takes: one per input
field (named like the field), or, for models whose fields are all numbers, a single `input`
tensor of shape `[-1, fields]` in the manifest's field order. A text field is a BYTES tensor of
shape `[-1, 1]`: one UTF-8 string per row, as Triton's clients send strings.

What a model gives follows its task. A classifier gives a `label` tensor (BYTES, `[-1, 1]`) and
a `scores` tensor (FP32, `[-1, labels]`, in the manifest's label order). A regressor gives one
FP32 tensor of shape `[-1, 1]` per output the manifest names, named like it (`fahrenheit`,
`kelvin`), rather than one `[-1, outputs]` tensor: its outputs are different quantities with
their own units, a caller asks for one by name (`outputs` in the request) as for any tensor,
and a generic client (perf_analyzer, tritonclient's `as_numpy`) reads each without knowing the
manifest's order.

The pydantic models here are documentation only: `tensors.parse_request` checks bodies itself,
so that a refusal reads as OIP's `{"error": msg}` with a message a tensor-minded caller can act
on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from engine.models.manifest import FieldSpec
from engine.models.runtime import LoadedModel
from engine.server.errors import documented

PLATFORM = "pytorch_torchexport"
COMBINED_INPUT = "input"
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


# -- the shapes in the OpenAPI document --------------------------------------------------------


def undescribed(schema: dict[str, Any]) -> None:
    """Keep a shape's docstring out of the OpenAPI document (`json_schema_extra`): it speaks
    to readers of the code, and the document describes only the shapes that opt in."""
    schema.pop("description", None)


class _Doc(BaseModel):
    """Base of the OIP shapes in the OpenAPI document (documentation only, never a parser)."""

    model_config = ConfigDict(protected_namespaces=(), json_schema_extra=undescribed)


class OipTensorMetadata(_Doc):
    """One tensor in a model's OIP metadata (`model_metadata` builds it)."""

    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 marks the batch dimension")


class OipModelParameters(_Doc):
    """The `parameters` of a model's OIP metadata."""

    max_batch_size: int = Field(description="the most rows one infer request may carry")


class OipModelMetadata(_Doc):
    """`GET /v2/models/{model_name}`'s answer, as `model_metadata` builds it."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[OipTensorMetadata]
    outputs: list[OipTensorMetadata]
    parameters: OipModelParameters


class OipRequestInput(_Doc):
    """One input tensor: `data` flat in row-major order, or nested to follow `shape`."""

    model_config = ConfigDict(json_schema_extra=None)  # the docstring is the description

    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class OipRequestOutput(_Doc):
    """One output a caller asks for by name."""

    name: str
    parameters: dict[str, Any] | None = None


class OipInferenceRequest(_Doc):
    """An OIP v2 inference request. See `GET /v2/models/{model_name}` for the tensors a model
    takes; every row of a batch is validated before any is run."""

    model_config = ConfigDict(json_schema_extra=None)  # the docstring is the description

    id: str | None = Field(None, description="the caller's correlation ID, echoed back")
    parameters: dict[str, Any] | None = None
    inputs: list[OipRequestInput] = Field(min_length=1)
    outputs: list[OipRequestOutput] | None = Field(
        None, description="the outputs wanted (default: all)"
    )


class OipResponseOutput(_Doc):
    """One output tensor of an infer answer (`tensors.response_body` builds it)."""

    name: str
    datatype: Datatype
    shape: list[int]
    data: list[Any]


class OipInferenceResponse(_Doc):
    """An infer answer, as `tensors.response_body` builds it."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OipResponseOutput]


class OipErrorBody(_Doc):
    """OIP's error shape, `{"error": "<message>"}` (`errors.oip_error` builds it)."""

    error: str


OIP_ERRORS = documented(
    OipErrorBody,
    {
        400: "invalid request: names the tensor, row or field",
        404: "unknown model or version",
        409: "X-Request-ID already used",
        413: "body too large",
        500: "internal error (no internals are shown)",
        503: "overloaded (with Retry-After) or not ready",
    },
)


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


# An enum's choice and a text field's string both travel as BYTES (UTF-8 strings).
_FIELD_DATATYPES = {
    "float": "FP32",
    "int": "INT64",
    "bool": "BOOL",
    "enum": "BYTES",
    "text": "BYTES",
}


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
    """The tensors an infer answer holds, by name, in the order it lists them: a classifier's
    `label` and `scores`, or one `[-1, 1]` FP32 tensor per regression output (see above)."""
    if not model.manifest.is_classifier:
        return {name: TensorSpec(name, "FP32", (-1, 1)) for name in model.output_names}
    return {
        "label": TensorSpec("label", "BYTES", (-1, 1)),
        "scores": TensorSpec("scores", "FP32", (-1, len(model.labels))),
    }


def required_inputs(model: LoadedModel) -> list[TensorSpec]:
    """The tensors every request sends: one per input field. A generic client (Triton's
    perf_analyzer) sends every input the metadata lists, so the metadata lists only these; the
    combined `input` tensor is still taken instead of them."""
    return [_field_tensor(spec) for spec in model.manifest.inputs]


def model_metadata(model: LoadedModel, max_batch_size: int) -> dict[str, Any]:
    """OIP model metadata; `parameters.max_batch_size` is the largest batch `infer` takes
    (Triton's model configuration names the same limit `max_batch_size`)."""
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [spec.metadata() for spec in required_inputs(model)],
        "outputs": [spec.metadata() for spec in output_specs(model).values()],
        "parameters": {"max_batch_size": max_batch_size},
    }


def _config_tensor(spec: TensorSpec) -> dict[str, Any]:
    # Triton's configuration names BYTES `TYPE_STRING`, and its dims leave out the batch
    # dimension when the model batches (`max_batch_size` > 0).
    datatype = "STRING" if spec.datatype == "BYTES" else spec.datatype
    return {"name": spec.name, "data_type": f"TYPE_{datatype}", "dims": list(spec.shape[1:])}


def model_config(model: LoadedModel, max_batch_size: int) -> dict[str, Any]:
    """The model configuration extension's answer, in the shape Triton's clients read
    (`GET /v2/models/{m}/config`): the batch limit, the inputs a request sends, the outputs.
    The combined `input` tensor, still taken instead of the per-field ones, is in neither this
    nor the metadata: perf_analyzer refuses a configuration input the metadata does not list
    ("no metadata found for input tensor input"), and sends every input the metadata lists.
    The engine batches rows from many requests together, which Triton calls dynamic batching."""
    return {
        "name": model.name,
        "platform": PLATFORM,
        "backend": "inferdeck",
        "max_batch_size": max_batch_size,
        "input": [_config_tensor(spec) for spec in required_inputs(model)],
        "output": [_config_tensor(spec) for spec in output_specs(model).values()],
        "dynamic_batching": {},
    }
