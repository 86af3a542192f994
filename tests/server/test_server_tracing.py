"""OpenTelemetry traces from `inferdeck serve`, received by an OTLP/HTTP receiver on 127.0.0.1
that decodes what arrives with OpenTelemetry's own protobuf definitions (opentelemetry-proto):
one SERVER span per request with a child per engine stage, the caller's trace continued, its
"not sampled" flag honoured, configured by the standard OTEL_* environment only, and a receiver
that is down or stalls never slows an answer."""

from __future__ import annotations

import gzip
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO
from live_server import BODY, ServeProcess, free_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from engine.server.otlp import Tracing
from engine.server.otlp_export import NICENESS
from engine.server.telemetry import tracing_from_env, tracing_wanted

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
STAGES = {"validate", "metadata", "queue_wait", "inference", "write"}


@dataclass
class Received:
    """What the receiver decoded: every span with its resource's attributes."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def by_trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.spans if s["trace_id"] == trace_id]

    def wait_for(self, trace_id: str, count: int, within_s: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            found = self.by_trace(trace_id)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(self.by_trace(trace_id))} spans of {trace_id}, not {count}")


def _attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def _decoded(span: Any, resource: dict[str, Any], scope: str) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent": span.parent_span_id.hex(),
        "kind": span.kind,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "attributes": _attributes(span.attributes),
        "status": span.status.code,
        "resource": resource,
        "scope": scope,
    }


class _Receiver(http.server.ThreadingHTTPServer):
    received: Received
    stall_s: float = 0.0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        time.sleep(self.server.stall_s)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        decoded = [
            _decoded(span, _attributes(resource_spans.resource.attributes), scope_spans.scope.name)
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self.server.received.lock:
            self.server.received.spans.extend(decoded)
            self.server.received.posts += 1
        assert self.path == "/v1/traces"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver(("127.0.0.1", 0), _Handler)
    server.received = Received()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _otel_env(endpoint: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {
        **env,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "inferdeck-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: the test waits less
        **extra,
    }


@pytest.mark.slow
def test_each_request_is_a_server_span_with_a_child_per_stage_in_the_callers_trace(
    tmp_path: Path, receiver: _Receiver
) -> None:
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    env = _otel_env(endpoint, OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    serve = ServeProcess(tmp_path / "serve.log", env=env)
    try:
        answer = httpx.post(
            f"{serve.url}/predict",
            json=BODY,
            headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            timeout=30,
        )
        assert answer.status_code == 200
        _, trace_id, server_span, flags = answer.headers["traceparent"].split("-")
        assert trace_id == CALLER_TRACE and flags == "01"

        spans = receiver.received.wait_for(CALLER_TRACE, 1 + len(STAGES))
        (server,) = [s for s in spans if s["parent"] == CALLER_SPAN]
        assert server["name"] == "POST /predict" and server["span_id"] == server_span
        assert server["kind"] == 2  # SPAN_KIND_SERVER
        assert server["attributes"]["http.response.status_code"] == 200
        assert server["attributes"]["inferdeck.request_id"] == answer.json()["request_id"]
        assert server["attributes"]["inferdeck.model"] == "iris"
        assert server["resource"]["service.name"] == "inferdeck-under-test"
        children = [s for s in spans if s["parent"] == server_span]
        assert {c["name"] for c in children} == STAGES
        for child in children:  # each stage lies inside the request, on the wall clock
            assert server["start"] <= child["start"] <= child["end"] <= server["end"], child
        assert abs(server["start"] / 1e9 - time.time()) < 120

        # OIP infer: the route's template names the span; a 400 is a span too, and no stages.
        infer = httpx.post(
            f"{serve.url}/v2/models/iris/infer",
            json={"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}]},
            timeout=30,
        )
        assert infer.status_code == 400
        refused_trace = infer.headers["traceparent"].split("-")[1]
        (refused,) = receiver.received.wait_for(refused_trace, 1)
        assert refused["name"] == "POST /v2/models/{model_name}/infer"
        assert refused["attributes"]["http.response.status_code"] == 400
        assert refused["parent"] == ""  # no caller trace: this span is the root

        # Probes and scrapes are not traced; a caller's "not sampled" request is not exported.
        httpx.get(f"{serve.url}/health", timeout=10)
        unsampled = "5bf92f3577b34da6a3ce929d0e0e4736"
        httpx.post(
            f"{serve.url}/predict",
            json=BODY,
            headers={"traceparent": f"00-{unsampled}-{CALLER_SPAN}-00"},
            timeout=30,
        )
        last = httpx.post(f"{serve.url}/predict", json=BODY, timeout=30)
        receiver.received.wait_for(last.headers["traceparent"].split("-")[1], 1 + len(STAGES))
    finally:
        code, log = serve.stop()
    assert code == 0, log
    assert receiver.received.by_trace(unsampled) == []
    names = {s["name"] for s in receiver.received.spans}
    assert not any("health" in name for name in names), names


@pytest.mark.slow
def test_a_receiver_that_is_down_or_stalls_never_slows_an_answer_or_the_stop(
    tmp_path: Path, receiver: _Receiver
) -> None:
    receiver.stall_s = 3.0  # each export waits 3 s for its answer
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens
    for endpoint in (f"http://127.0.0.1:{receiver.server_address[1]}", closed):
        env = _otel_env(endpoint, OTEL_EXPORTER_OTLP_TIMEOUT="2")
        serve = ServeProcess(tmp_path / "serve.log", env=env)
        try:
            with httpx.Client(base_url=serve.url, timeout=30) as client:
                started = time.monotonic()
                answers = [client.post("/predict", json=BODY) for _ in range(200)]
                elapsed = time.monotonic() - started
            assert all(a.status_code == 200 for a in answers)
            # 200 requests, one at a time: seconds on a slow machine, never an export's stall
            # per request (that would be 600 s).
            assert elapsed < 60, elapsed
        finally:
            stopping = time.monotonic()
            code, log = serve.stop()
            stop_s = time.monotonic() - stopping
        assert code == 0, log
        assert stop_s < 45, stop_s  # the last export is bounded by its timeout
        assert "Traceback" not in log, log


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_only_the_standard_environment_turns_tracing_on(env: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(env) is wanted


def test_without_otel_environment_the_sdk_is_never_imported(tmp_path: Path) -> None:
    """Off means off: no SDK, no exporter, no thread, not even the import."""
    script = (
        "import sys, asyncio\n"
        "from pathlib import Path\n"
        "from engine.server import ServerSettings, asgi_app\n"
        f"app = asgi_app(ServerSettings(db_path=Path({str(tmp_path / 'x.db')!r})))\n"
        "async def main():\n"
        "    async with app.app.router.lifespan_context(app.app):\n"
        "        assert app.plane.tracing is None\n"
        "asyncio.run(main())\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'engine.server.otlp'))]\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.parametrize(
    ("sampler", "arg", "caller_flags", "sampled"),
    [
        (None, None, None, True),  # the default: parentbased_always_on
        (None, None, "00", False),  # ...which follows a caller that opted out
        ("traceidratio", "0", None, False),
        ("traceidratio", "1", None, True),
        ("parentbased_traceidratio", "0", "01", True),  # the caller's decision wins
        ("parentbased_traceidratio", "0", None, False),
        ("always_off", None, "01", False),
        ("always_on", None, "00", True),
        ("no-such-sampler", None, None, True),  # unknown: the default, and a warning
    ],
)
def test_the_standard_sampler_environment_decides_the_answered_flag(
    sampler: str | None, arg: str | None, caller_flags: str | None, sampled: bool
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    if sampler is not None:
        env["OTEL_TRACES_SAMPLER"] = sampler
    if arg is not None:
        env["OTEL_TRACES_SAMPLER_ARG"] = arg
    tracing = Tracing(env)
    try:
        flags = caller_flags or "01"
        ours = f"00-{CALLER_TRACE}-{'1' * 16}-{flags}"
        decided = tracing.sample(ours, CALLER_SPAN if caller_flags else None)
    finally:
        tracing.shutdown()
    assert decided[:53] == ours[:53]
    assert decided[53:] == ("01" if sampled else "00")


@pytest.mark.parametrize(
    "bad",
    [
        {"OTEL_BSP_MAX_QUEUE_SIZE": "0"},
        {"OTEL_BSP_SCHEDULE_DELAY": "-1"},
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "5000"},  # above the queue's 2048
    ],
)
def test_settings_the_sdk_refuses_turn_tracing_off_with_one_error_not_a_failed_start(
    bad: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", **bad}
    with caplog.at_level("ERROR"):
        assert tracing_from_env(env) is None
    assert any("OpenTelemetry settings refused" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("ratio", ["nan", "inf", "-inf", "x", "2", "-1"])
def test_a_ratio_that_is_no_share_is_clamped_not_a_crash(ratio: str) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_TRACES_SAMPLER": "traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }
    tracing = Tracing(env)
    try:
        decided = tracing.sample(f"00-{CALLER_TRACE}-{'1' * 16}-01", None)
    finally:
        tracing.shutdown()
    assert decided[53:] in ("00", "01")


@pytest.mark.slow
def test_spans_are_built_in_a_process_of_their_own_whose_death_costs_no_answer(
    tmp_path: Path, receiver: _Receiver
) -> None:
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    serve = ServeProcess(tmp_path / "serve.log", env=_otel_env(endpoint))
    try:
        children = Path(f"/proc/{serve.proc.pid}/task/{serve.proc.pid}/children")
        exporters = [
            int(pid)
            for pid in children.read_text().split()
            if b"otlp_export" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(exporters) == 1, children.read_text()
        first = httpx.post(f"{serve.url}/predict", json=BODY, timeout=30)
        receiver.received.wait_for(first.headers["traceparent"].split("-")[1], 1 + len(STAGES))
        # It encodes at a lower CPU priority than the service it traces.
        service_nice = os.getpriority(os.PRIO_PROCESS, serve.proc.pid)
        assert os.getpriority(os.PRIO_PROCESS, exporters[0]) == service_nice + NICENESS
        os.kill(exporters[0], signal.SIGKILL)
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            answers = [client.post("/predict", json=BODY) for _ in range(300)]
        assert all(a.status_code == 200 for a in answers)
    finally:
        code, log = serve.stop()
    assert code == 0, log
    assert "Traceback" not in log
