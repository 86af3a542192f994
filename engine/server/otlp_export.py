"""The exporter process of `serve`'s tracing: answered requests' timings in, OpenTelemetry
spans out, over OTLP/HTTP with opentelemetry-sdk's batch processor and exporter.

Started by `otlp.Tracing.start` (one per worker) as `python -m engine.server.otlp_export`
and fed batches of `Record` on its stdin, each a pickle after its length (4 bytes, big-endian);
the end of stdin asks it to export what it holds and stop. The SDK reads its configuration from
the standard `OTEL_*` environment. It runs at a lower CPU priority than the service, ignores
Ctrl+C (the terminal sends it to the whole process group; the service's own stop ends it
through stdin, so the last spans are not lost) and asks Linux to stop it if its worker dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import sys
from importlib import metadata
from typing import Any, BinaryIO

# traceparent, caller's span ID, name, start and end (wall-clock ns), attributes, HTTP status,
# and the stages: (name, start, end, attributes).
Record = tuple[
    str, str | None, str, int, int, dict[str, Any], int, list[tuple[str, int, int, dict[str, Any]]]
]

_PR_SET_PDEATHSIG = 1
NICENESS = 10  # added to the service's own


def export_forever(stream: BinaryIO) -> None:
    """The process's body: export every batch read from `stream` until it ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine("inferdeck: otlp: %(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no such call
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    # Encoding spans is most of this process's work (about 40 µs a span in the SDK's
    # encoder) and none of it is urgent: batches wait seconds anyway. At a lower priority it
    # takes the CPU time the service leaves, rather than competing with the requests it
    # traces; if that is not enough, its bounded queues drop spans, never slow an answer.
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    spans = SpanBuilder()
    try:
        while len(head := stream.read(4)) == 4:
            data = stream.read(int.from_bytes(head, "big"))
            # Pickles from the worker that started this process, through its own pipe.
            for record in pickle.loads(data):
                spans.add(record)
    finally:
        spans.shutdown()


class _OneLine(logging.Formatter):
    """The SDK's log lines (an unreachable collector, retries) as one line each, as the
    service logs: an exception's last line, never its traceback."""

    def formatException(self, ei: Any) -> str:
        return ""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).rstrip()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        record.exc_text = None
        return text


def _fixed_hash(resource: Any) -> Any:
    """`resource` with its hash worked out once. The encoder groups spans by resource, so it
    hashes the resource of every span, and the SDK's hash is a sorted JSON dump of every
    attribute: a quarter of this process's CPU time. Every span here has this one resource,
    which never changes."""
    from opentelemetry.sdk.resources import Resource

    fixed_hash = hash(resource)

    class _FixedHashResource(Resource):
        def __hash__(self) -> int:
            return fixed_hash

    return _FixedHashResource(resource.attributes, resource.schema_url)


class SpanBuilder:
    """Turns `Record`s into the SDK's spans, a SERVER span with a child per stage, and hands
    them to its batch processor."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "inferdeck"}))
        self.resource = _fixed_hash(resource)
        try:
            version = metadata.version("inferdeck")
        except metadata.PackageNotFoundError:
            version = "unknown"
        self.scope = InstrumentationScope("inferdeck.server", version)
        self.processor = BatchSpanProcessor(OTLPSpanExporter())
        self.ids = RandomIdGenerator()
        self.span, self.context, self.flags = ReadableSpan, SpanContext, TraceFlags
        self.server_kind, self.internal_kind = SpanKind.SERVER, SpanKind.INTERNAL
        self.error, self.unset = Status(StatusCode.ERROR), Status(StatusCode.UNSET)

    def add(self, record: Record) -> None:
        traceparent, parent_span, name, start, end, attributes, status, stages = record
        flags = self.flags(int(traceparent[53:55], 16))
        trace_id = int(traceparent[3:35], 16)
        server = self.context(trace_id, int(traceparent[36:52], 16), False, flags)
        parent = self.context(trace_id, int(parent_span, 16), True, flags) if parent_span else None
        self.processor.on_end(
            self.span(
                name,
                server,
                parent,
                self.resource,
                attributes,
                kind=self.server_kind,
                status=self.error if status >= 500 else self.unset,
                start_time=start,
                end_time=end,
                instrumentation_scope=self.scope,
            )
        )
        for stage, begin, finish, extra in stages:
            child = self.context(trace_id, self.ids.generate_span_id(), False, flags)
            self.processor.on_end(
                self.span(
                    stage,
                    child,
                    server,
                    self.resource,
                    extra,
                    kind=self.internal_kind,
                    start_time=begin,
                    end_time=finish,
                    instrumentation_scope=self.scope,
                )
            )

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout), then stop."""
        self.processor.shutdown()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    export_forever(sys.stdin.buffer)
