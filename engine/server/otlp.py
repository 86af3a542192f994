"""The OpenTelemetry side of `telemetry`: spans of answered requests, built from what the
edge layer and the engine measured, and queued on the SDK's batch processor for OTLP/HTTP.

Imported only when tracing is on (`telemetry.tracing_from_env`).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from engine.work import Work

log = logging.getLogger(__name__)

_ERROR = Status(StatusCode.ERROR)
_UNSET = Status(StatusCode.UNSET)
_FIXED: dict[str, Sampler] = {
    "always_on": ALWAYS_ON,
    "always_off": ALWAYS_OFF,
    "parentbased_always_on": DEFAULT_ON,
    "parentbased_always_off": DEFAULT_OFF,
}
_RATIO = {"traceidratio": TraceIdRatioBased, "parentbased_traceidratio": ParentBasedTraceIdRatio}


def sampler_from_env(environ: Mapping[str, str]) -> Sampler:
    """The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name, as the SDK reads
    them (default: `parentbased_always_on`, every request the caller did not opt out of)."""
    name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name in _FIXED:
        return _FIXED[name]
    if name in _RATIO:
        try:
            ratio = float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            ratio = 1.0
        if not math.isfinite(ratio):  # NaN passes min() and max() untouched
            ratio = 1.0
        return _RATIO[name](min(max(ratio, 0.0), 1.0))
    log.warning("OTEL_TRACES_SAMPLER=%r is not known: sampling every request", name)
    return DEFAULT_ON


class Tracing:
    """Turns a finished request into OpenTelemetry spans and queues them for export."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.sampler = sampler_from_env(environ)
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "inferdeck"}))
        self.resource = resource
        try:
            version = metadata.version("inferdeck")
        except metadata.PackageNotFoundError:
            version = "unknown"
        self.scope = InstrumentationScope("inferdeck.server", version)
        self.processor = BatchSpanProcessor(OTLPSpanExporter())
        self._ids = RandomIdGenerator()

    def sample(self, traceparent: str, parent_span: str | None) -> str:
        """`traceparent` with its sampled flag as the sampler decides, from the caller's span
        (when it sent one) and the trace ID. Decided as the request arrives, so the answer's
        `traceparent` says whether this request is traced."""
        trace_id = int(traceparent[3:35], 16)
        parent = None
        if parent_span is not None:
            flags = TraceFlags(int(traceparent[53:55], 16))
            caller = SpanContext(trace_id, int(parent_span, 16), True, flags)
            parent = set_span_in_context(NonRecordingSpan(caller))
        decision = self.sampler.should_sample(parent, trace_id, "request", SpanKind.SERVER)
        sampled = "01" if decision.decision is Decision.RECORD_AND_SAMPLE else "00"
        return traceparent[:53] + sampled

    def record(
        self,
        traceparent: str,
        parent_span: str | None,
        name: str,
        start_ns: int,
        end_ns: int,
        attributes: dict[str, Any],
        status_code: int,
        works: list[Work],
    ) -> None:
        """Queue the spans of one answered request. `traceparent` is the one the service
        answered with; `parent_span` the caller's span ID, when it sent one; `start_ns` and
        `end_ns` are `time.perf_counter_ns()` readings, as the engine's spans are."""
        flags = TraceFlags(int(traceparent[53:55], 16))
        if not flags.sampled:
            return  # the caller decided not to trace this request
        trace_id = int(traceparent[3:35], 16)
        server = SpanContext(trace_id, int(traceparent[36:52], 16), False, flags)
        parent = SpanContext(trace_id, int(parent_span, 16), True, flags) if parent_span else None
        # The engine and the edge measure on the monotonic clock; spans carry wall-clock time.
        to_wall = time.time_ns() - time.perf_counter_ns()
        spans = [
            ReadableSpan(
                name,
                server,
                parent,
                self.resource,
                {**attributes, "http.response.status_code": status_code},
                kind=SpanKind.SERVER,
                status=_ERROR if status_code >= 500 else _UNSET,
                start_time=start_ns + to_wall,
                end_time=end_ns + to_wall,
                instrumentation_scope=self.scope,
            )
        ]
        if works:
            # A batch's rows share their batch's stages: the slowest row's (as Server-Timing).
            work = max(works, key=lambda w: w.latency_us)
            base_ns = work.accepted_ns + to_wall
            for stage in work.spans:
                child = SpanContext(trace_id, self._ids.generate_span_id(), False, flags)
                stage_start = base_ns + int(stage[1]) * 1000
                extra = stage[3] if len(stage) > 3 else {}
                spans.append(
                    ReadableSpan(
                        str(stage[0]),
                        child,
                        server,
                        self.resource,
                        _scalars(extra),  # the request's ID is on its parent, once
                        kind=SpanKind.INTERNAL,
                        start_time=stage_start,
                        end_time=stage_start + int(stage[2]) * 1000,
                        instrumentation_scope=self.scope,
                    )
                )
        for span in spans:
            self.processor.on_end(span)

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout), then stop."""
        self.processor.shutdown()  # type: ignore[no-untyped-call]


def _scalars(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's attributes that OpenTelemetry can carry (strings, numbers, booleans)."""
    carried = str | bool | int | float
    return {f"inferdeck.{k}": v for k, v in attributes.items() if isinstance(v, carried)}
