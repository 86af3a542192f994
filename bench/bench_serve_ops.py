"""What running `inferdeck serve` in production costs. Run: `make bench-serve-ops`.

In one run, with wrk (closed loop, `--connections` connections) posting one OIP infer body
for the built-in `iris` model:

1. Observability: the service with metrics and tracing off (`--no-metrics`, no `OTEL_*`), with
   `/metrics` on, and with `/metrics` plus OpenTelemetry tracing exporting every request (or
   the share `--trace-ratio` asks for, through the standard sampler variables) over OTLP/HTTP
   to a receiver in this script (it reads each export and answers 200). Prometheus' scrape is
   included: this script scrapes `/metrics` once a second during each round. Rounds alternate
   the three, medians of `--repeat`; the ratios to "off" are the cost, in requests per second
   and in CPU time per request of the service's processes (its span exporter included).
2. Memory: the total proportional set size (PSS, from `/proc/PID/smaps_rollup`: shared pages
   divided among the processes that share them) of `--workers 1` and of `--workers 4`, parent
   included, after start and a short load; and one worker's resident set (RSS) after start and
   after 100,000 requests.

Every round must be clean (no non-2xx answer, no socket error). Figures print as a table and
are saved to bench/out/serve_ops.json, with one JSON line at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from process_cpu import tree_cpu_s

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
INFER = "/v2/models/iris/infer"
VALUES = {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}
BODY = json.dumps(
    {
        "inputs": [
            {"name": name, "shape": [1, 1], "datatype": "FP32", "data": [value]}
            for name, value in VALUES.items()
        ]
    }
)
LUA = f"""
wrk.method = "POST"
wrk.body = [==[{BODY}]==]
wrk.headers["Content-Type"] = "application/json"
"""
CONFIGS = ("off", "metrics", "metrics+tracing")


class BenchError(RuntimeError):
    """A round that did not run clean: its figures would not be throughput."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Sink(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP receiver that reads every export and answers 200 (the spans are counted
    by size only: decoding them is the receiver's cost, not the service's)."""

    exports = 0
    bytes_in = 0


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.exports += 1
        self.server.bytes_in += len(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Serve:
    """`inferdeck serve` in its own process with a fresh database."""

    def __init__(self, tmp: Path, name: str, *flags: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{name}.log"
        command = [str(REPO / ".venv" / "bin" / "inferdeck"), "serve", "--port", str(self.port)]
        command += ["--db", str(tmp / f"{name}.db"), *flags]
        with self.log.open("wb") as stderr:
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=stderr)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise BenchError(f"serve exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        raise BenchError("serve did not become ready")

    def pids(self) -> list[int]:
        """The parent and its workers."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [self.proc.pid, *(int(p) for p in children.read_text().split())]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def _kib(pid: int, path: str, field: str) -> int:
    for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/{path}")


def pss_mb(pids: list[int]) -> float:
    return sum(_kib(pid, "smaps_rollup", "Pss") for pid in pids) / 1024


def rss_mb(pid: int) -> float:
    return _kib(pid, "status", "VmRSS") / 1024


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: float, script: Path) -> dict[str, float]:
    """One clean round of wrk: requests/s, p50, p99; a BenchError on any failed request."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s"]
    run = subprocess.run([*command, str(script), url + INFER], capture_output=True, text=True)
    out = run.stdout
    if run.returncode != 0:
        raise BenchError(f"wrk failed: {out}\n{run.stderr}")
    if "Non-2xx" in out or "Socket errors" in out:
        raise BenchError(f"a round with failed requests:\n{out}")
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE)}
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": pct.get("50", float("nan")),
        "p99_ms": pct.get("99", float("nan")),
    }


def _scrape_while(url: str, stop: threading.Event, scrapes: list[int]) -> None:
    """Prometheus' part: one scrape a second, as a scrape_interval of 1 s would."""
    with httpx.Client(timeout=10) as client:
        while not stop.wait(1.0):
            response = client.get(url + "/metrics")
            if response.status_code != 200:
                raise BenchError(f"/metrics answered {response.status_code}")
            scrapes.append(len(response.content))


def observability(args: argparse.Namespace, tmp: Path, script: Path) -> dict[str, Any]:
    sink = _Sink(("127.0.0.1", 0), _SinkHandler)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    tracing_env = {
        **base,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        "OTEL_SERVICE_NAME": "inferdeck-bench",
    }
    if args.trace_ratio is not None:
        tracing_env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        tracing_env["OTEL_TRACES_SAMPLER_ARG"] = str(args.trace_ratio)
    servers = {
        "off": Serve(tmp, "off", "--no-metrics", env=base),
        "metrics": Serve(tmp, "metrics", env=base),
        "metrics+tracing": Serve(tmp, "tracing", env=tracing_env),
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    try:
        for name, server in servers.items():
            wrk(server.url, args.connections, args.warmup, script)
            print(f"  warmed up {name}", flush=True)
        for repeat in range(args.repeat):
            # Each repeat starts with a different configuration: no one always goes first.
            order = CONFIGS[repeat % 3 :] + CONFIGS[: repeat % 3]
            for name in order:
                server = servers[name]
                stop, scrapes = threading.Event(), list[int]()
                scraper = None
                if name != "off":
                    scraper = threading.Thread(
                        target=_scrape_while, args=(server.url, stop, scrapes), daemon=True
                    )
                    scraper.start()
                cpu_before = tree_cpu_s(server.proc.pid)
                figures = wrk(server.url, args.connections, args.duration, script)
                # The service's processes (its span exporter included) per request.
                cpu_s = tree_cpu_s(server.proc.pid) - cpu_before
                figures["cpu_us"] = cpu_s / figures["requests"] * 1e6
                stop.set()
                if scraper is not None:
                    scraper.join()
                figures["scrapes"] = len(scrapes)
                rounds[name].append(figures)
                print(
                    f"  {name:16} {figures['rps']:8.0f} req/s {figures['cpu_us']:6.0f} CPU µs/req",
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
        sink.shutdown()
    if sink.exports == 0:
        raise BenchError("tracing was on but nothing reached the OTLP receiver")
    medians = {
        name: {
            k: statistics.median(r[k] for r in rounds[name])
            for k in ("rps", "p50_ms", "p99_ms", "cpu_us")
        }
        for name in CONFIGS
    }
    off = medians["off"]["rps"]
    return {
        "connections": args.connections,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "medians": medians,
        "ratio_to_off": {name: medians[name]["rps"] / off for name in CONFIGS},
        "cpu_ratio_to_off": {
            name: medians[name]["cpu_us"] / medians["off"]["cpu_us"] for name in CONFIGS
        },
        "otlp_exports": sink.exports,
        "otlp_bytes": sink.bytes_in,
        "rounds": rounds,
    }


def _finished_group(size: int) -> list[Any]:
    """A batch of `size` answered iris requests with the engine's spans, as `Engine.on_finished`
    hands them to the metrics and the statistics."""
    from engine.stats import RunRecorder
    from engine.work import FutureSink, Work

    spans: list[Any] = [
        ("validate", 0, 3),
        ("metadata", 3, 1),
        ("queue_wait", 4, 60),
        ("inference", 64, 700, {"batch_size": size}),
        ("write", 764, 400),
    ]
    return [
        Work(
            request_id=f"r{i}",
            run=RunRecorder("run", "bench"),
            sink=FutureSink(),
            source="http",
            client_id="oip",
            model=None,
            features=None,
            priority=0,
            input_json=None,
            accepted_ns=time.perf_counter_ns(),
            created_us=0,
            spans=list(spans),
            status="ok",
            latency_us=1200,
            named_model="iris",
        )
        for i in range(size)
    ]


def in_process(args: argparse.Namespace) -> dict[str, float]:
    """The service process's own CPU time per request for the metrics (`ServiceMetrics.record`)
    and for tracing (`Tracing.record` and the thread that hands batches to the exporter
    process), measured here on `args.calls` synthetic requests in groups of 4, with a real
    exporter process sending to a receiver in this script. Unlike req/s, this does not move
    with the machine's other load."""
    from engine.server.metrics import ServiceMetrics
    from engine.server.otlp import Tracing

    sink = _Sink(("127.0.0.1", 0), _SinkHandler)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    groups = [_finished_group(4) for _ in range(args.calls // 4)]
    requests = 4 * len(groups)
    metrics = ServiceMetrics(["iris"])
    start = time.process_time()
    for group in groups:
        metrics.record(group)
    metrics_us = (time.process_time() - start) / requests * 1e6

    tracing = Tracing(
        {
            **os.environ,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.server_address[1]}",
        }
    )
    traceparent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    attributes = {"http.request.method": "POST", "url.path": INFER}

    async def paced(record: bool) -> float:
        """CPU seconds of this process for the requests, recorded or not (the pacing's own
        cost, measured without recording, is taken off)."""
        begin = time.process_time()
        for group in groups:
            if record:
                for _ in group:
                    now = time.perf_counter_ns()
                    tracing.record(
                        traceparent, None, "POST", now - 1000, now, attributes, 200, group
                    )
            # About 1,000 requests a second, as the service answers them: as fast as the loop
            # could go, the exporter's bounded queues would drop spans.
            await asyncio.sleep(0.004)
        if record:
            # Until the feeder thread has sent every batch and the exporter has exported them
            # (waiting on the exporter costs this process nothing).
            tracing.shutdown()
        return time.process_time() - begin

    try:
        pacing_s = asyncio.run(paced(record=False))
        tracing.start()
        tracing_us = (asyncio.run(paced(record=True)) - pacing_s) / requests * 1e6
    finally:
        tracing.shutdown()
        sink.shutdown()
    if tracing.dropped or sink.exports == 0:
        raise BenchError(f"tracing dropped {tracing.dropped} spans, {sink.exports} exports")
    return {"requests": requests, "metrics_us": metrics_us, "tracing_us": tracing_us}


def memory(args: argparse.Namespace, tmp: Path, script: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
    pss: dict[str, float] = {}
    for workers in (1, 4):
        server = Serve(tmp, f"workers{workers}", "--workers", str(workers), env=env)
        try:
            # Every worker answers some requests first (each on its own connections).
            wrk(server.url, max(8, workers * 4), 3, script)
            pss[f"workers_{workers}"] = pss_mb(server.pids())
        finally:
            server.stop()
    one = Serve(tmp, "rss", env=env)
    try:
        rss_start = rss_mb(one.proc.pid)
        sent = 0
        while sent < args.requests:
            sent += int(wrk(one.url, args.connections, 10, script)["requests"])
        rss_after = rss_mb(one.proc.pid)
    finally:
        one.stop()
    return {
        "pss_mb": pss,
        "pss_ratio_4_to_1": pss["workers_4"] / pss["workers_1"],
        "rss_mb_after_start": rss_start,
        "rss_mb_after_requests": rss_after,
        "requests": sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100_000, help="for the RSS figure")
    parser.add_argument("--only", choices=("observability", "in-process", "memory"))
    parser.add_argument("--calls", type=int, default=10_000, help="for the in-process figures")
    parser.add_argument(
        "--trace-ratio",
        type=float,
        help="trace this share of requests (OTEL_TRACES_SAMPLER=parentbased_traceidratio); "
        "default: every request",
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cpus": os.cpu_count(), "trace_ratio": args.trace_ratio or 1.0}
    with tempfile.TemporaryDirectory(prefix="inferdeck-ops-") as folder:
        tmp = Path(folder)
        script = tmp / "infer.lua"
        script.write_text(LUA)
        try:
            if args.only in (None, "observability"):
                print("observability: off / metrics / metrics+tracing", flush=True)
                result["observability"] = observability(args, tmp, script)
            if args.only in (None, "in-process"):
                print("in-process CPU per request: metrics, tracing", flush=True)
                result["in_process"] = in_process(args)
            if args.only in (None, "memory"):
                print("memory: PSS of 1 and 4 workers, RSS after requests", flush=True)
                result["memory"] = memory(args, tmp, script)
        except BenchError as exc:
            print(f"bench_serve_ops: {exc}", file=sys.stderr)
            sys.exit(1)
    (OUT / "serve_ops.json").write_text(json.dumps(result, indent=2))
    if "observability" in result:
        obs = result["observability"]
        print(
            f"\n{'config':18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'ratio':>8}"
            f"{'CPU µs/req':>12}{'ratio':>8}"
        )
        for name in CONFIGS:
            m = obs["medians"][name]
            ratio, cpu_ratio = obs["ratio_to_off"][name], obs["cpu_ratio_to_off"][name]
            print(
                f"{name:18}{m['rps']:10.0f}{m['p50_ms']:10.2f}{m['p99_ms']:10.2f}{ratio:8.3f}"
                f"{m['cpu_us']:12.0f}{cpu_ratio:8.3f}"
            )
    if "in_process" in result:
        cost = result["in_process"]
        print(
            f"\nin the service's process, per request ({cost['requests']:,} requests): "
            f"metrics {cost['metrics_us']:.1f} µs, tracing {cost['tracing_us']:.1f} µs"
        )
    if "memory" in result:
        mem = result["memory"]
        print(
            f"\nPSS: 1 worker {mem['pss_mb']['workers_1']:.0f} MB, 4 workers "
            f"{mem['pss_mb']['workers_4']:.0f} MB ({mem['pss_ratio_4_to_1']:.2f}x); RSS "
            f"{mem['rss_mb_after_start']:.0f} MB after start, "
            f"{mem['rss_mb_after_requests']:.0f} MB after {mem['requests']:,} requests"
        )
    summary = {k: v for k, v in result.get("observability", {}).items() if k != "rounds"}
    print(
        json.dumps(
            {
                "observability": summary,
                "in_process": result.get("in_process"),
                "memory": result.get("memory"),
            }
        )
    )


if __name__ == "__main__":
    main()
