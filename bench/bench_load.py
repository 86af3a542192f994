"""Benchmark of `inferdeck load` (issue: remote targets). Run: `make bench-load`.

Throughput, in one run and against the same server: nginx returning a fixed JSON body
(`return 200 '...'`, one worker, no access log) pinned to core 0, and on core 1, one after the
other, with the same number of connections and no think time:
  (a) `inferdeck load URL --protocol json --concurrency 16 --duration 10 --json`, every request
      stored in a temporary SQLite file, as a real run stores it;
  (b) Locust's HttpUser, headless, 16 users (bench/locustfile.py);
  (c) wrk, when installed: the ceiling of what one core of client can get out of this server.
Goals: ≥ 2,000 req/s from inferdeck, and ≥ 1.2× Locust.

Fidelity, with tests/fault_server.py as a process on core 0 and `inferdeck load --rate` on core 1:
  - a fixed 20 ms server delay at a constant 200 req/s: p50 within 5 % of 20 ms;
  - the same with a single 1 s stall in the middle: the p99 must show the stall (latency counts
    from the intended send time; a closed-loop tool would have sent nothing while stalled).

Medians of `--repeat` runs print as a table and are saved to bench/out/load.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
BIN = Path(sys.executable).parent
# The same body for every tool; nginx ignores it, but each client still has to encode and send it.
BODY = {
    "inputs": {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}
}
ANSWER = '{"model":"iris","outputs":{"label":"versicolor"},"latency_ms":0.1}'
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    # Keep every connection for the whole run, for every client alike.
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{answer}';
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    # Debian puts it in /usr/sbin, which a non-root PATH often lacks.
    found = shutil.which("nginx")
    return found or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(core: int, command: list[str]) -> list[str]:
    """Server on core 0, client on core 1, so neither steals the other's CPU."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core), *command]
    return command


def wait_port(port: int, proc: subprocess.Popen[Any], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up on port {port}")


def stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def inferdeck_load(url: str, tmp: Path, extra: list[str], tag: str) -> dict[str, Any]:
    """One `inferdeck load` run on core 1 with a fresh database; its `--json` summary."""
    db = tmp / f"{tag}.db"
    payload = tmp / "payload.json"
    command = [sys.executable, "-m", "engine.cli", "load", url, "--protocol", "json"]
    command += [*extra, "--payload", str(payload), "--db", str(db), "--json"]
    proc = subprocess.run(
        pinned(1, command), cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode not in (0, 1) or not lines:
        raise RuntimeError(f"inferdeck load failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def locust(url: str, tmp: Path, users: int, seconds: int, tag: str) -> dict[str, float]:
    prefix = tmp / tag
    command = [str(BIN / "locust"), "-f", str(REPO / "bench" / "locustfile.py"), "--headless"]
    command += ["-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary"]
    command += ["--host", url, "--csv", str(prefix), "--loglevel", "WARNING"]
    subprocess.run(pinned(1, command), cwd=REPO, capture_output=True, timeout=600, check=True)
    with open(f"{prefix}_stats.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return {
        "rps": float(row["Requests/s"]),
        "requests": int(row["Request Count"]),
        "failures": int(row["Failure Count"]),
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    out = subprocess.run(
        pinned(1, [*command, url]), capture_output=True, text=True, check=True
    ).stdout
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE)}
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": pct["50"],
        "p99_ms": pct["99"],
    }


def fault_server(
    delay_ms: float, stall: tuple[int, float] | None
) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, str(REPO / "tests" / "fault_server.py"), "--delay-ms", str(delay_ms)]
    if stall:
        command += ["--stall-at", str(stall[0]), "--stall-s", str(stall[1])]
    proc = subprocess.Popen(pinned(0, command), cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        stop(proc)
        raise RuntimeError(f"fault server did not start: {line!r}")
    return proc, int(line.split()[1])


def fidelity_run(
    tmp: Path, rate: int, seconds: int, stall: tuple[int, float] | None, tag: str
) -> dict[str, Any]:
    """A constant-rate run against the 20 ms server; the client's and the server's own view."""
    proc, port = fault_server(20.0, stall)
    try:
        extra = ["--rate", str(rate), "--duration", str(seconds), "--timeout", "10"]
        summary = inferdeck_load(f"http://127.0.0.1:{port}", tmp, extra, tag)
    finally:
        proc.terminate()
        assert proc.stdout is not None
        server_side = json.loads(proc.stdout.read().strip().splitlines()[-1])
        proc.wait(timeout=10)
    return {"summary": summary, "server": server_side}


def median(runs: list[dict[str, Any]], *keys: str) -> float:
    def get(run: dict[str, Any]) -> float:
        value: Any = run
        for key in keys:
            value = value[key]
        return float(value)

    return float(statistics.median(get(r) for r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=int, default=200, help="fidelity runs, requests/s")
    parser.add_argument("--fidelity-seconds", type=int, default=5)
    parser.add_argument("--stall-s", type=float, default=1.0)
    args = parser.parse_args()
    nginx_bin = nginx_binary()
    if nginx_bin is None:
        sys.exit("bench_load: nginx is not installed (make bench-load installs it)")
    if not (BIN / "locust").exists():
        sys.exit("bench_load: locust is not installed (make bench-load installs the bench extra)")
    has_wrk = shutil.which("wrk") is not None
    c, secs = args.concurrency, args.seconds
    throughput: list[dict[str, Any]] = []
    fidelity: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="inferdeck-bench-load-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "payload.json").write_text(json.dumps(BODY))
        script = tmp / "post.lua"
        script.write_text(
            f"wrk.method = 'POST'\nwrk.body = '{json.dumps(BODY)}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port, answer=ANSWER))
        nginx = subprocess.Popen(
            pinned(0, [nginx_bin, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", "stderr"]),
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_port(port, nginx, "nginx")
            for i in range(args.repeat):
                extra = ["--concurrency", str(c), "--duration", str(secs)]
                s = inferdeck_load(url, tmp, extra, f"load-{i}")
                lo = locust(url, tmp, c, secs, f"locust-{i}")
                w = wrk(url, script, c, secs) if has_wrk else None
                run = {
                    "inferdeck": s,
                    "locust": lo,
                    "wrk": w,
                    "ratio": s["throughput_per_s"] / lo["rps"],
                }
                throughput.append(run)
                print(
                    f"run {i + 1}: inferdeck {s['throughput_per_s']:,.0f}/s "
                    f"(p50 {s['latency_ms']['p50']:.2f} ms, {s['failed']} failed) | "
                    f"locust {lo['rps']:,.0f}/s (p50 {lo['p50_ms']:.0f} ms) | "
                    + (f"wrk {w['rps']:,.0f}/s" if w else "wrk not installed"),
                    flush=True,
                )
        finally:
            stop(nginx)
        stall_at = int(args.rate * args.fidelity_seconds * 0.4)  # 40 % into the run
        for i in range(args.repeat):
            steady = fidelity_run(tmp, args.rate, args.fidelity_seconds, None, f"steady-{i}")
            stalled = fidelity_run(
                tmp, args.rate, args.fidelity_seconds, (stall_at, args.stall_s), f"stall-{i}"
            )
            fidelity.append({"steady": steady, "stall": stalled})
            sl, tl = steady["summary"]["latency_ms"], stalled["summary"]["latency_ms"]
            print(
                f"fidelity {i + 1}: 20 ms server p50 {sl['p50']:.2f} ms (server's own "
                f"{steady['server']['server_delay_p50_ms']:.2f}) | {args.stall_s:g} s stall: "
                f"p50 {tl['p50']:.1f} p99 {tl['p99']:.1f} max {tl['max']:.1f} ms",
                flush=True,
            )

    p50 = median(fidelity, "steady", "summary", "latency_ms", "p50")
    figures: dict[str, Any] = {
        "concurrency": c,
        "seconds": secs,
        "inferdeck_rps": median(throughput, "inferdeck", "throughput_per_s"),
        "inferdeck_p50_ms": median(throughput, "inferdeck", "latency_ms", "p50"),
        "inferdeck_p99_ms": median(throughput, "inferdeck", "latency_ms", "p99"),
        "locust_rps": median(throughput, "locust", "rps"),
        "ratio_inferdeck_locust": median(throughput, "ratio"),
        "wrk_rps": median(throughput, "wrk", "rps") if has_wrk else None,
        "fidelity": {
            "rate": args.rate,
            "seconds": args.fidelity_seconds,
            "delay_p50_ms": p50,
            "delay_p50_error": abs(p50 - 20.0) / 20.0,
            "server_own_p50_ms": median(fidelity, "steady", "server", "server_delay_p50_ms"),
            "stall_s": args.stall_s,
            "stall_p50_ms": median(fidelity, "stall", "summary", "latency_ms", "p50"),
            "stall_p99_ms": median(fidelity, "stall", "summary", "latency_ms", "p99"),
            "stall_max_ms": median(fidelity, "stall", "summary", "latency_ms", "max"),
        },
        "runs": throughput,
        "fidelity_runs": fidelity,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "load.json").write_text(json.dumps(figures, indent=2))

    f = figures["fidelity"]
    print(
        f"\nmedians of {args.repeat} runs; nginx on core 0, each client on core 1, {c} connections:"
    )
    rows = (
        ("inferdeck load, req/s", f"{figures['inferdeck_rps']:,.0f}", "≥ 2,000"),
        (
            "  its p50 / p99",
            f"{figures['inferdeck_p50_ms']:.2f} / {figures['inferdeck_p99_ms']:.2f} ms",
            "",
        ),
        ("Locust HttpUser, req/s", f"{figures['locust_rps']:,.0f}", ""),
        ("inferdeck / Locust", f"{figures['ratio_inferdeck_locust']:.2f}×", "≥ 1.2×"),
        ("wrk (ceiling), req/s", f"{figures['wrk_rps']:,.0f}" if has_wrk else "not installed", ""),
        (
            f"20 ms server at {args.rate}/s, p50",
            f"{f['delay_p50_ms']:.2f} ms ({f['delay_p50_error']:.1%} off)",
            "within 5 %",
        ),
        ("  the server's own delay, p50", f"{f['server_own_p50_ms']:.2f} ms", ""),
        (
            f"one {args.stall_s:g} s stall, p50 / p99",
            f"{f['stall_p50_ms']:.1f} / {f['stall_p99_ms']:.1f} ms",
            "p99 shows the stall",
        ),
    )
    for name, value, goal in rows:
        print(f"  {name:34} {value:>28}   {goal}")


if __name__ == "__main__":
    main()
