"""The OpenTelemetry side of `telemetry`, in the service's process: the sampling decision as a
request arrives, and each answered request's timings handed to the exporter process.

Building spans and encoding them for OTLP costs the SDK about 30 µs of the interpreter per
span (six per request): on the service's event loop, or on a thread that shares its GIL, that
took a third of its throughput. So the service only appends one tuple per traced request and
sends them in batches, through a bounded queue, to a process of its own (`otlp_export`), where
the SDK builds the spans and its batch processor and OTLP/HTTP exporter send them. A queue
that is full (a collector far behind) drops batches rather than ever making a request wait.

Imported only when tracing is on (`telemetry.tracing_from_env`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

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
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    set_span_in_context,
)

from engine.server.otlp_export import Record
from engine.work import Work

log = logging.getLogger(__name__)

# Traced requests per batch sent to the exporter process, and how long one waits to fill.
BATCH = 256
BATCH_WAIT_S = 0.05
# Batches the queue holds: past this the collector is far behind and new batches are dropped.
QUEUE_BATCHES = 64
# On the way out: how long the exporter process may take to send what it holds.
STOP_TIMEOUT_S = 20.0
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
    """The service's tracing: `sample` as a request arrives, `record` once it is answered,
    `start` and `shutdown` around the exporter process (see the module's note)."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self.environ = dict(environ)
        self.sampler = sampler_from_env(environ)
        self.dropped = 0  # traced requests whose spans the full queue had no room for
        self._pending: list[Record] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._queue: queue.Queue[list[Record] | None] = queue.Queue(QUEUE_BATCHES)
        self._feeder: threading.Thread | None = None

    def start(self) -> None:
        """Start the exporter process (`python -m engine.server.otlp_export`: a fork of this
        one would copy torch and the engine's threads for nothing) and the thread that feeds
        it."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "engine.server.otlp_export"],
            stdin=subprocess.PIPE,
            env={**os.environ, **self.environ},
        )
        self._queue = queue.Queue(QUEUE_BATCHES)
        self._feeder = threading.Thread(target=self._feed, name="otlp-feeder", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        """Write each batch to the exporter's stdin, length first (on this thread: a pipe the
        exporter is slow to read blocks here, never on the event loop)."""
        assert self._process is not None and self._process.stdin is not None
        pipe = self._process.stdin
        while (batch := self._queue.get()) is not None:
            data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                pipe.write(len(data).to_bytes(4, "big") + data)
                pipe.flush()
            except OSError:  # the exporter is gone: nothing more can be sent
                log.warning("the OTLP exporter process stopped: no more traces")
                break
        with contextlib.suppress(OSError):
            pipe.close()

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
        """Keep one answered request's timings for the exporter. `traceparent` is the one the
        service answered with; `parent_span` the caller's span ID, when it sent one; `start_ns`
        and `end_ns` are `time.perf_counter_ns()` readings, as the engine's spans are."""
        if traceparent[53:55] == "00":
            return  # not sampled
        # The engine and the edge measure on the monotonic clock; spans carry wall-clock time.
        to_wall = time.time_ns() - time.perf_counter_ns()
        stages: list[tuple[str, int, int, dict[str, Any]]] = []
        if works:
            # A batch's rows share their batch's stages: the slowest row's (as Server-Timing).
            work = max(works, key=lambda w: w.latency_us)
            base = work.accepted_ns + to_wall
            for stage in work.spans:
                begin = base + int(stage[1]) * 1000
                extra = _scalars(stage[3]) if len(stage) > 3 else {}
                stages.append((str(stage[0]), begin, begin + int(stage[2]) * 1000, extra))
        self._pending.append(
            (
                traceparent,
                parent_span,
                name,
                start_ns + to_wall,
                end_ns + to_wall,
                {**attributes, "http.response.status_code": status_code},
                status_code,
                stages,
            )
        )
        if len(self._pending) >= BATCH:
            self.flush()
        elif self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(BATCH_WAIT_S, self.flush)

    def flush(self) -> None:
        """Hand what is pending to the exporter process, or drop it when its queue is full."""
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        batch, self._pending = self._pending, []
        if not batch or self._feeder is None:
            return
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            if not self.dropped:
                log.warning("the OTLP exporter is behind: dropping spans")
            self.dropped += len(batch)

    def shutdown(self) -> None:
        """Send what is pending, let the exporter process export it, and stop it (blocking:
        call it off the event loop)."""
        self.flush()
        process, self._process = self._process, None
        if process is None or self._feeder is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=STOP_TIMEOUT_S)
        self._feeder.join(STOP_TIMEOUT_S)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _scalars(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's attributes that OpenTelemetry can carry (strings, numbers, booleans)."""
    carried = str | bool | int | float
    return {f"inferdeck.{k}": v for k, v in attributes.items() if isinstance(v, carried)}
