"""Benchmark of `inferdeck serve` (issue: the HTTP service). Run: `make bench-serve`.

In one run, with the same load tool (wrk, closed loop) and the same uvicorn settings:
1. a bare FastAPI endpoint that returns a constant JSON body (the ceiling of the stack);
2. `inferdeck serve` with the tabular model, one worker: validation, the engine, the batched
   inference and the committed SQLite row behind every 200;
both at 16 concurrent connections, unpinned (the process may use the machine's cores, as a
deployed worker would) or with `--pin` each server on core 0 and wrk on core 1.

Then 4× overload: four times as many connections as the service admits at once (its queue,
512), each sending back to back. Three quarters of them cannot be admitted and get a 503
instead of a place in an unbounded queue. Two views of its latency: the server's own time from
the edge to the answer, by status (from its access log), and a probe's, sending its own
requests one at a time through the same overload. The probe also waits in the socket backlog
in front of the one event loop, which by Little's law is connections / answers per second for
any server, 200 or 503. The server's memory is sampled throughout.

Medians of `--repeat` runs print as a table and are saved to bench/out/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
BODY = {
    "client_id": "bench",
    "model": "iris",
    "input_payload": {
        "sepal_length": 6.1,
        "sepal_width": 2.8,
        "petal_length": 4.7,
        "petal_width": 1.2,
    },
}
BARE_APP = """
from fastapi import FastAPI
app = FastAPI()
ANSWER = {"request_id": "x", "model": "iris", "outputs": {"label": "versicolor"}}
@app.post("/predict")
async def predict() -> dict:
    return ANSWER
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


PIN = False  # set by --pin


def pinned(core: int, command: list[str]) -> list[str]:
    if PIN and shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core), *command]
    return command


def start(
    command: list[str], url: str, env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    stderr = log.open("wb") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        pinned(0, command), env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.post(f"{url}/predict", json=BODY, timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{command} did not come up")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run(
        pinned(1, [*command, f"{url}/predict"]), capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE)}
    return {
        "rps": rps,
        "requests": total,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        # wrk leaves out its distribution when a run ends with sockets still open.
        "p50_ms": pct.get("50", float("nan")),
        "p99_ms": pct.get("99", float("nan")),
    }


QUEUE_CAPACITY = 512  # the service's admission queue (ServerSettings)


def probe(url: str, stop: threading.Event) -> list[tuple[int, float]]:
    """(status, ms) for requests sent one at a time until `stop`, over one kept-alive
    connection, so each waits in the same queue as the overload's."""
    answers: list[tuple[int, float]] = []
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            status = client.post(f"{url}/predict", json=BODY).status_code
            answers.append((status, (time.perf_counter() - t0) * 1000))
    return answers


def overload_run(
    url: str, connections: int, seconds: int, script: Path, pid: int
) -> dict[str, Any]:
    stop = threading.Event()
    probed: list[list[tuple[int, float]]] = []
    rss: list[float] = []
    prober = threading.Thread(target=lambda: probed.append(probe(url, stop)))

    def sample_memory() -> None:
        while not stop.is_set():
            rss.append(rss_mb(pid))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample_memory)
    rss_before = rss_mb(pid)
    sampler.start()
    prober.start()
    try:
        load = wrk(url, connections, seconds, script)
    finally:
        stop.set()
        prober.join()
        sampler.join()
    answers = probed[0] if probed else []

    def pct(status: int, q: float) -> float | None:
        values = sorted(ms for s, ms in answers if s == status)
        return values[min(len(values) - 1, int(q * len(values)))] if values else None

    return load | {
        "connections": connections,
        "probe_count": len(answers),
        "probe_503": sum(1 for s, _ in answers if s == 503),
        "probe_503_p50_ms": pct(503, 0.50),
        "probe_503_p99_ms": pct(503, 0.99),
        "probe_200_p50_ms": pct(200, 0.50),
        "probe_200_p99_ms": pct(200, 0.99),
        "probe_other": sum(1 for s, _ in answers if s not in (200, 503)),
        "rss_before_mb": rss_before,
        "rss_peak_mb": max(rss, default=rss_before),
        "rss_after_mb": rss_mb(pid),
    }


def server_side(access_log: Path, skip: int) -> dict[str, Any]:
    """The server's own time to answer (edge in to response sent), by status, from its access
    log: what a 503 costs the server, apart from the wait in the socket backlog before it."""
    lines = access_log.read_bytes().splitlines()[skip:]
    by_status: dict[int, list[float]] = {}
    for line in lines:
        if line.startswith(b"{"):
            entry = json.loads(line)
            by_status.setdefault(entry["status"], []).append(entry["duration_ms"])
    figures: dict[str, Any] = {}
    for status in (200, 503):
        values = sorted(by_status.get(status, []))
        for q in (0.50, 0.99):
            at = values[min(len(values) - 1, int(q * len(values)))] if values else None
            figures[f"server_{status}_p{round(q * 100)}_ms"] = at
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--pin", action="store_true", help="servers on core 0, wrk on core 1 (default: unpinned)"
    )
    args = parser.parse_args()
    global PIN
    PIN = args.pin
    if not shutil.which("wrk"):
        sys.exit("bench_serve: wrk is not installed (make bench-serve installs it)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        script = tmp / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = '{json.dumps(BODY)}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        (tmp / "bare.py").write_text(BARE_APP)
        env = {**os.environ, "PYTHONPATH": f"{tmp}:{REPO}", "INFERDECK_DB": str(tmp / "s.db")}
        uvicorn_args = ["--host", "127.0.0.1", "--log-level", "warning", "--no-access-log"]
        bare_port, serve_port = free_port(), free_port()
        bare_url, serve_url = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{serve_port}"
        python = sys.executable
        bare = start(
            [python, "-m", "uvicorn", "bare:app", "--port", str(bare_port), *uvicorn_args],
            bare_url,
            env,
        )
        access_log = tmp / "access.jsonl"  # the service's one JSON line per request
        serve = start(
            [python, "-m", "engine.cli", "serve", "--port", str(serve_port)],
            serve_url,
            env,
            access_log,
        )
        try:
            runs: list[dict[str, Any]] = []
            for i in range(args.repeat):
                wrk(serve_url, args.connections, 2, script)  # warm both
                wrk(bare_url, args.connections, 2, script)
                b = wrk(bare_url, args.connections, args.seconds, script)
                s = wrk(serve_url, args.connections, args.seconds, script)
                runs.append({"bare": b, "serve": s})
                print(
                    f"run {i + 1}: bare {b['rps']:,.0f}/s p50 {b['p50_ms']:.2f} p99 "
                    f"{b['p99_ms']:.2f} ms | serve {s['rps']:,.0f}/s p50 {s['p50_ms']:.2f} "
                    f"p99 {s['p99_ms']:.2f} ms, {s['non_2xx']} non-2xx",
                    flush=True,
                )
            logged_before = len(access_log.read_bytes().splitlines())
            overload = overload_run(serve_url, 4 * QUEUE_CAPACITY, args.seconds, script, serve.pid)
            overload |= server_side(access_log, logged_before)
            after = wrk(serve_url, args.connections, 3, script)  # it recovers at once
        finally:
            for proc in (bare, serve):
                proc.terminate()
                proc.wait(timeout=60)

    def med(side: str, key: str) -> float:
        return float(statistics.median(r[side][key] for r in runs))

    figures = {
        "pinned": PIN,
        "connections": args.connections,
        "bare_rps": med("bare", "rps"),
        "serve_rps": med("serve", "rps"),
        "ratio": statistics.median(r["serve"]["rps"] / r["bare"]["rps"] for r in runs),
        "serve_p50_ms": med("serve", "p50_ms"),
        "serve_p99_ms": med("serve", "p99_ms"),
        "p99_over_p50": statistics.median(
            r["serve"]["p99_ms"] / r["serve"]["p50_ms"] for r in runs
        ),
        "overload": overload,
        "after_overload": after,
        "runs": runs,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve.json").write_text(json.dumps(figures, indent=2))
    o = figures["overload"]
    print(f"\nmedians of {len(runs)} runs, {args.connections} connections:")
    rows = (
        ("bare FastAPI constant, req/s", f"{figures['bare_rps']:,.0f}", ""),
        ("inferdeck serve, req/s", f"{figures['serve_rps']:,.0f}", ""),
        ("ratio", f"{figures['ratio']:.0%}", "≥ 60 %"),
        (
            "serve p50 / p99",
            f"{figures['serve_p50_ms']:.2f} / {figures['serve_p99_ms']:.2f} ms",
            "",
        ),
        ("serve p99 / p50", f"{figures['p99_over_p50']:.2f}×", "≤ 4×"),
        (
            f"4× overload, {o['connections']:,} connections",
            f"{o['non_2xx']:,} of {o['requests']:,} answered 503",
            "",
        ),
        ("  all answers p50 / p99 (wrk)", f"{o['p50_ms']:.2f} / {o['p99_ms']:.2f} ms", ""),
        (
            "  server's own time, 503s p50 / p99",
            f"{_fmt(o['server_503_p50_ms'])} / {_fmt(o['server_503_p99_ms'])} ms",
            "quick",
        ),
        (
            "  server's own time, 200s p50 / p99",
            f"{_fmt(o['server_200_p50_ms'])} / {_fmt(o['server_200_p99_ms'])} ms",
            "",
        ),
        (
            "  probe (client side): 503s p50 / p99",
            f"{_fmt(o['probe_503_p50_ms'])} / {_fmt(o['probe_503_p99_ms'])} ms "
            f"({o['probe_503']} of {o['probe_count']})",
            "",
        ),
        (
            "  probe (client side): 200s p50 / p99",
            f"{_fmt(o['probe_200_p50_ms'])} / {_fmt(o['probe_200_p99_ms'])} ms",
            "",
        ),
        (
            "  server memory before / peak / after",
            f"{o['rss_before_mb']:.0f} / {o['rss_peak_mb']:.0f} / {o['rss_after_mb']:.0f} MB",
            "bounded",
        ),
        ("  right after, 16 connections", f"{after['rps']:,.0f}/s, {after['non_2xx']} non-2xx", ""),
    )
    for name, value, goal in rows:
        print(f"  {name:34} {value:>34}   {goal}")


def _fmt(ms: float | None) -> str:
    return "–" if ms is None else f"{ms:.2f}"


if __name__ == "__main__":
    main()
