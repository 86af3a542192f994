"""OpenTelemetry traces over OTLP/HTTP, when the standard `OTEL_*` environment asks for them.

Configured as every OpenTelemetry SDK is: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns tracing on; the exporter reads its own headers,
timeout and compression variables, the batch processor its `OTEL_BSP_*` ones, the resource
`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; `OTEL_SDK_DISABLED=true` or
`OTEL_TRACES_EXPORTER=none` turn it off. Without an endpoint nothing here is imported or run.

Each request becomes one SERVER span (`POST /predict`, `POST /v2/models/{m}/infer`, ...) with
one child per engine stage (validate, queue_wait, inference, write, ...), placed by the stage
spans the engine already measured. The span's trace and span IDs are the ones in the
`traceparent` the service answers with, so a caller can find its request's trace; a caller's
`traceparent` is continued (its span is the parent) and its "not sampled" flag is honoured.
Spans are built after the answer from what was measured, in an exporter process of their own
(`otlp`, `otlp_export`), where the SDK's batch processor and exporter send them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.server.otlp import Tracing

log = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def tracing_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for OTLP traces (see the module's note)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip() for e in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if "otlp" not in exporters:
        return False
    if not any(environ.get(name, "").strip() for name in _ENDPOINTS):
        return False
    protocol = next((environ[p] for p in _PROTOCOLS if environ.get(p)), "http/protobuf")
    if protocol.strip() != "http/protobuf":
        log.warning("OTLP protocol %r is not supported (only http/protobuf): no traces", protocol)
        return False
    return True


def tracing_from_env(environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """The service's tracing when the environment asks for it, else None (nothing imported)."""
    if not tracing_wanted(environ):
        return None
    from engine.server.otlp import Tracing

    problem = settings_problem(environ)
    if problem is not None:
        log.error("OpenTelemetry settings refused (%s): no traces", problem)
        return None
    tracing = Tracing(environ)
    tracing.start()
    return tracing


def settings_problem(environ: Mapping[str, str]) -> str | None:
    """Why the SDK would refuse these settings (e.g. OTEL_BSP_MAX_QUEUE_SIZE=0), checked here
    because the exporter process that reads them has no one to tell: None when they are good."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class _Nowhere(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    saved = dict(os.environ)
    os.environ.update(environ)
    try:
        BatchSpanProcessor(_Nowhere()).shutdown()  # type: ignore[no-untyped-call]
    except ValueError as exc:
        return str(exc)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return None
