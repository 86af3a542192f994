"""The wire contracts, in pydantic v2: request, response, error envelope, span, trace, run summary.

These are the shapes every entry point (CLI, desktop form, HTTP service) accepts or emits. The
model-specific `input_payload` is validated separately against the model's manifest schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

IDENT_PATTERN = r"^[A-Za-z0-9_.\-]+$"
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=IDENT_PATTERN)]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=IDENT_PATTERN)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=IDENT_PATTERN)]
# Integers are stored as SQLite integers and written by orjson: both stop at signed 64 bits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def int64(value: Any) -> Any:
    """Refuse an integer outside signed 64 bits (a per-field error, never a failed write).

    Metadata checks it before the type: its union with `float` would otherwise take such an
    integer as a rounded float, quietly."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and not INT64_MIN <= value <= INT64_MAX
    ):
        raise ValueError("integers must be within -2**63 .. 2**63-1 (signed 64 bits)")
    return value


MetadataValue = Annotated[
    Annotated[str, StringConstraints(max_length=256)] | int | float | bool,
    BeforeValidator(int64),
]

MAX_METADATA_KEYS = 32
MAX_METADATA_KEY_LEN = 64

Status = Literal["queued", "running", "ok", "rejected", "failed", "interrupted"]


def _undescribed(schema: dict[str, Any]) -> None:
    """Keep a shape's docstring out of the OpenAPI document: it speaks to readers of the code."""
    schema.pop("description", None)


# For the shapes the service's OpenAPI document names that carry no description there.
_UNDESCRIBED = ConfigDict(json_schema_extra=_undescribed)


class _Strict(BaseModel):
    """Base of the shapes callers send: unknown fields and NaN/Infinity are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PredictRequest(_Strict):
    """What a caller sends. `input_payload` holds the model's own input fields."""

    client_id: ClientId
    model: ModelName
    input_payload: dict[str, Any]
    request_timestamp: datetime | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    request_id: RequestId | None = None

    @field_validator("metadata")
    @classmethod
    def _bounded_metadata(cls, value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} metadata keys")
        for key in value:
            if not 1 <= len(key) <= MAX_METADATA_KEY_LEN:
                raise ValueError(f"metadata keys must be 1-{MAX_METADATA_KEY_LEN} characters")
        return value


class Span(BaseModel):
    """One stage of a request: offsets and durations in microseconds from its acceptance."""

    name: str
    start_us: int
    duration_us: int
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Trace(BaseModel):
    """One request's spans under its ID: the wire shape of a trace."""

    request_id: str
    spans: list[Span]


class Prediction(BaseModel):
    """A classifier's answer for one request: the label and every class's score."""

    model_config = _UNDESCRIBED

    label: str
    scores: dict[str, float]


class Estimate(BaseModel):
    """A regressor's answer for one request: a number per output name."""

    model_config = _UNDESCRIBED

    values: dict[str, float]


class PredictResponse(BaseModel):
    """What `/predict` answers for a request that ran (`Work.response`)."""

    model_config = _UNDESCRIBED

    request_id: str
    model: str
    model_version: str
    outputs: Prediction | Estimate
    latency_ms: float
    spans: list[Span]


class ErrorDetail(BaseModel):
    """One problem: where (`field`, `row`, `line`) and why."""

    field: str | None = None
    message: str
    type: str | None = None
    row: int | None = None
    line: int | None = None


class ErrorBody(BaseModel):
    """A refusal or failure: a code, a message, per-field details and the request's ID."""

    model_config = _UNDESCRIBED

    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str | None = None


class ErrorEnvelope(BaseModel):
    """Every error answer of the service: `{"error": ErrorBody}`."""

    model_config = _UNDESCRIBED

    error: ErrorBody


class LatencyPercentiles(BaseModel):
    """A run's latency percentiles in milliseconds (part of `RunSummary`)."""

    p50: float
    p90: float
    p99: float
    p999: float
    max: float


class RunSummary(BaseModel):
    """The summary a run leaves behind, and the last stdout line of `--json` commands."""

    run_id: str
    kind: str
    accepted: int
    ok: int
    rejected: int
    failed: int
    duration_s: float
    throughput_per_s: float
    latency_ms: LatencyPercentiles
