"""`Work`: one request as it moves through the engine, where it came from (`Origin`), and the
sinks that receive it when done.

The same object travels from acceptance to the sink, so the hot path allocates one object per
request. A sink receives a list of finished `Work` only after their rows are committed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from engine.contracts import ErrorBody, Estimate, Prediction, PredictResponse, Span
from engine.models.runtime import FeatureRow, LoadedModel
from engine.results_out import out_record
from engine.stats import RunRecorder

# (name, start offset µs, duration µs[, attributes]) — compact, and stored as JSON arrays.
SpanTuple = tuple[Any, ...]


class Sink(Protocol):
    """Where the engine delivers finished requests after their commit (`FutureSink`, a file job,
    a live view); the engine's `Committer` calls it."""

    def deliver(self, done: list[Work]) -> None: ...


@dataclass(slots=True)
class Origin:
    """Where a group of requests comes from and where their outcomes go; callers of the engine
    (commands, the service, the app, file jobs) make one per run or caller."""

    run: RunRecorder
    sink: Sink
    source: str
    client_id: str = "cli"
    target: str = "local"
    job_id: int | None = None


@dataclass(slots=True, eq=False)
class Work:
    """One request from acceptance to its sink (one object per request on the hot path): the
    engine creates it, the batcher fills in its result, the committer stores and delivers it."""

    request_id: str
    run: RunRecorder
    sink: Sink
    source: str
    client_id: str | None
    model: LoadedModel | None
    features: FeatureRow | None
    priority: int
    input_json: str | None
    accepted_ns: int  # when the request was accepted (or was meant to be sent: open-loop load)
    created_us: int  # wall clock, µs since the epoch
    spans: list[SpanTuple]
    target: str = "local"
    job_id: int | None = None
    source_row: int | None = None
    metadata_json: str | None = None
    status: str = "queued"
    output: dict[str, Any] | None = None
    error: ErrorBody | None = None
    enqueued_ns: int = 0
    ready_ns: int = 0  # result (or rejection) known, waiting for the writer
    latency_us: int = 0  # accepted -> committed
    stored: bool = True  # False only when the transaction holding its row failed
    named_model: str | None = None  # the model a rejected request named (no `model` loaded)

    @property
    def model_name(self) -> str | None:
        return self.named_model if self.model is None else self.model.name

    def span_models(self) -> list[Span]:
        return [
            Span(name=s[0], start_us=s[1], duration_us=s[2], attributes=s[3] if len(s) > 3 else {})
            for s in self.spans
        ]

    def response(self) -> PredictResponse:
        assert self.model is not None and self.output is not None
        return PredictResponse(
            request_id=self.request_id,
            model=self.model.name,
            model_version=self.model.version,
            outputs=(
                Prediction.model_validate(self.output)
                if "label" in self.output
                else Estimate.model_validate(self.output)
            ),
            latency_ms=self.latency_us / 1000,
            spans=self.span_models(),
        )

    def result_record(self) -> dict[str, Any]:
        """The JSON object written per result to `--out`."""
        return out_record(
            self.request_id,
            self.source_row,
            self.status,
            self.model_name,
            self.output,
            self.error.model_dump(exclude_none=True) if self.error is not None else None,
            self.latency_us,
        )


@dataclass
class FutureSink:
    """Resolves one future per request: for callers that await a single result.

    Keyed by the `Work` itself, not its ID: a request whose ID turned out to be taken is
    stored (and delivered) under a new one."""

    futures: dict[int, asyncio.Future[Work]] = field(default_factory=dict)

    def expect(self, work: Work) -> asyncio.Future[Work]:
        future: asyncio.Future[Work] = asyncio.get_running_loop().create_future()
        self.futures[id(work)] = future
        return future

    def deliver(self, done: list[Work]) -> None:
        for work in done:
            future = self.futures.pop(id(work), None)
            if future is not None and not future.done():
                future.set_result(work)


def compact_json(value: Any) -> str:
    """Compact JSON text; orjson because this runs several times per request."""
    return orjson.dumps(value).decode()
