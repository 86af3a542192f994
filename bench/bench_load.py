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

CPU per request (`--only cpu`), nginx as above on core 0 and `inferdeck load --protocol json` on
core 1, at `--rate 1000` and at `--concurrency 8`: the load process's user plus system CPU time
(the whole process, start-up included, from `getrusage(RUSAGE_CHILDREN)` around it) over the
requests it stored. Goal: ≤ 0.2 ms a request at both. A run of one request measures the start-up
alone, shown beside (what the loop itself spends is the rest). CPU time is the steady figure on
a shared machine: requests per second move with a neighbour's load, this process's instructions
do not.

Against a third-party OIP client (`--only perf_analyzer`): `inferdeck serve` on core 0 serving
the iris model, and on core 1, alternating and back to back, `inferdeck load --protocol oip
--model iris --concurrency C` and Triton's perf_analyzer (`/work/shared/tools/perf-analyzer`,
`--input-data zero`, 4 s windows, 20 % stability) at C = 1 and 8. Goals: inferdeck's throughput
≥ 0.9× perf_analyzer's and its p50 within 15 % of perf_analyzer's. The server's own CPU per
request is shown too: both clients must cost the server the same for the comparison to be fair.
inferdeck's runs keep the server-side sources on (OIP statistics and /metrics, found on their
own, polled every second), so the figures hold with them; each run prints which it used.

Medians of `--repeat` runs print as a table and are saved to bench/out/load.json (each part
run, under its own key; `--only` runs some parts and keeps the others' last figures there).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from process_cpu import tree_cpu_s

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


def inferdeck_load(
    url: str, tmp: Path, extra: list[str], tag: str, *, protocol: list[str] | None = None
) -> dict[str, Any]:
    """One `inferdeck load` run on core 1 with a fresh database; its `--json` summary, with
    `cpu_s`: the process's user plus system CPU time, start-up included (`cpu_s` is not a
    summary key of inferdeck's own: the benchmark adds it). `protocol`: the arguments that
    say what to send (default: `--protocol json` with the benchmark's body)."""
    db = tmp / f"{tag}.db"
    if protocol is None:
        protocol = ["--protocol", "json", "--payload", str(tmp / "payload.json")]
    command = [sys.executable, "-m", "engine.cli", "load", url, *protocol]
    command += [*extra, "--db", str(db), "--json"]
    # The children's CPU time before and after: this script reaps no other child meanwhile
    # (the servers it starts are reaped only when stopped), so the difference is this run's.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        pinned(1, command), cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode not in (0, 1) or not lines:
        raise RuntimeError(f"inferdeck load failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(lines[-1])
    summary["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return summary


def stored_rows(db: Path) -> int:
    """How many request rows a run's database holds (every request must be stored)."""
    with sqlite3.connect(db) as conn:
        count: int = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        return count


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


PARTS = ("throughput", "fidelity", "cpu", "perf_analyzer")
PERF_ANALYZER = Path("/work/shared/tools/perf-analyzer")


class Nginx:
    """nginx returning `ANSWER` to anything, one worker on core 0, for as long as it is open."""

    def __init__(self, tmp: Path, nginx_bin: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=self.port, answer=ANSWER))
        self._proc = subprocess.Popen(
            pinned(0, [nginx_bin, "-p", str(tmp), "-c", str(conf), "-e", "stderr"]),
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port, self._proc, "nginx")
        except BaseException:
            stop(self._proc)
            raise

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *_: object) -> None:
        stop(self._proc)


def throughput_part(args: argparse.Namespace, tmp: Path, nginx: Nginx) -> dict[str, Any]:
    """inferdeck load against Locust (and wrk) at `--concurrency` against nginx."""
    if not (BIN / "locust").exists():
        sys.exit("bench_load: locust is not installed (make bench-load installs the bench extra)")
    has_wrk = shutil.which("wrk") is not None
    script = tmp / "post.lua"
    script.write_text(
        f"wrk.method = 'POST'\nwrk.body = '{json.dumps(BODY)}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
    )
    c, secs, url = args.concurrency, args.seconds, nginx.url
    throughput: list[dict[str, Any]] = []
    for i in range(args.repeat):
        extra = ["--concurrency", str(c), "--duration", str(secs)]
        s = inferdeck_load(url, tmp, extra, f"load-{i}")
        lo = locust(url, tmp, c, secs, f"locust-{i}")
        w = wrk(url, script, c, secs) if has_wrk else None
        run = {"inferdeck": s, "locust": lo, "wrk": w, "ratio": s["throughput_per_s"] / lo["rps"]}
        throughput.append(run)
        print(
            f"run {i + 1}: inferdeck {s['throughput_per_s']:,.0f}/s "
            f"(p50 {s['latency_ms']['p50']:.2f} ms, {s['failed']} failed, "
            f"{s['cpu_s'] / max(s['accepted'], 1) * 1e6:.0f} µs CPU a request) | "
            f"locust {lo['rps']:,.0f}/s (p50 {lo['p50_ms']:.0f} ms) | "
            + (f"wrk {w['rps']:,.0f}/s" if w else "wrk not installed"),
            flush=True,
        )
    return {
        "concurrency": c,
        "seconds": secs,
        "inferdeck_rps": median(throughput, "inferdeck", "throughput_per_s"),
        "inferdeck_p50_ms": median(throughput, "inferdeck", "latency_ms", "p50"),
        "inferdeck_p99_ms": median(throughput, "inferdeck", "latency_ms", "p99"),
        "locust_rps": median(throughput, "locust", "rps"),
        "ratio_inferdeck_locust": median(throughput, "ratio"),
        "wrk_rps": median(throughput, "wrk", "rps") if has_wrk else None,
        "runs": throughput,
    }


def cpu_part(args: argparse.Namespace, tmp: Path, nginx: Nginx) -> dict[str, Any]:
    """CPU time per request of `inferdeck load` at `--cpu-rate` and at `--cpu-concurrency`."""
    secs = args.seconds
    modes = {
        f"rate {args.cpu_rate}": ["--rate", str(args.cpu_rate)],
        f"concurrency {args.cpu_concurrency}": ["--concurrency", str(args.cpu_concurrency)],
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    startup: list[float] = []
    for i in range(args.repeat):
        # Start-up alone (imports, the database, the preflight): one request.
        one = inferdeck_load(nginx.url, tmp, ["--concurrency", "1", "--requests", "1"], f"one-{i}")
        startup.append(one["cpu_s"])
        for name, mode in modes.items():
            tag = f"cpu-{name.replace(' ', '-')}-{i}"
            s = inferdeck_load(nginx.url, tmp, [*mode, "--duration", str(secs)], tag)
            rows = stored_rows(tmp / f"{tag}.db")
            n = max(s["accepted"], 1)
            run = {
                "cpu_s": s["cpu_s"],
                "requests": s["accepted"],
                "stored": rows,
                "failed": s["failed"],
                "not_sent": s.get("not_sent", 0),
                "rps": s["throughput_per_s"],
                "p50_ms": s["latency_ms"]["p50"],
                "p99_ms": s["latency_ms"]["p99"],
                "cpu_us_per_request": s["cpu_s"] / n * 1e6,
                "loop_cpu_us_per_request": (s["cpu_s"] - one["cpu_s"]) / n * 1e6,
            }
            runs[name].append(run)
            print(
                f"cpu {i + 1}, {name}: {run['cpu_us_per_request']:.0f} µs CPU a request "
                f"({run['loop_cpu_us_per_request']:.0f} without start-up's "
                f"{one['cpu_s']:.2f} s), {run['rps']:,.0f}/s, {rows:,} of "
                f"{s['accepted']:,} stored, p50 {run['p50_ms']:.2f} ms",
                flush=True,
            )
    figures: dict[str, Any] = {"seconds": secs, "startup_cpu_s": statistics.median(startup)}
    for name, each in runs.items():
        figures[name] = {
            key: median(each, key)
            for key in ("cpu_us_per_request", "loop_cpu_us_per_request", "rps", "p50_ms")
        } | {"all_stored": all(r["stored"] == r["requests"] for r in each), "runs": each}
    return figures


def fidelity_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The 20 ms server at `--rate`, steady and with one stall."""
    (tmp / "payload.json").write_text(json.dumps(BODY))
    fidelity: list[dict[str, Any]] = []
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
    return {
        "rate": args.rate,
        "seconds": args.fidelity_seconds,
        "delay_p50_ms": p50,
        "delay_p50_error": abs(p50 - 20.0) / 20.0,
        "server_own_p50_ms": median(fidelity, "steady", "server", "server_delay_p50_ms"),
        "stall_s": args.stall_s,
        "stall_p50_ms": median(fidelity, "stall", "summary", "latency_ms", "p50"),
        "stall_p99_ms": median(fidelity, "stall", "summary", "latency_ms", "p99"),
        "stall_max_ms": median(fidelity, "stall", "summary", "latency_ms", "max"),
        "runs": fidelity,
    }


def perf_analyzer(port: int, concurrency: int) -> dict[str, float]:
    """One perf_analyzer measurement on core 1 (it stops once 3 windows agree)."""
    command = [str(PERF_ANALYZER), "-u", f"127.0.0.1:{port}", "-m", "iris"]
    command += ["--input-data", "zero", "--concurrency-range", f"{concurrency}:{concurrency}"]
    command += ["--measurement-interval", "4000", "--stability-percentage", "20"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(pinned(1, command), capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout
    found = re.search(r"Throughput: ([\d.]+) infer/sec", out)
    p50 = re.search(r"p50 latency: (\d+) usec", out)
    count = re.search(r"Server: \s*Inference count: (\d+)", out)
    if proc.returncode != 0 or not found or not p50:
        raise RuntimeError(f"perf_analyzer failed ({proc.returncode}): {out[-1500:]}")
    return {
        "rps": float(found.group(1)),
        "p50_ms": int(p50.group(1)) / 1000,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "server_count": float(count.group(1)) if count else 0.0,
    }


def serve(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`inferdeck serve` on core 0 with its own database, once GET /ready answers 200."""
    port = free_port()
    command = [str(BIN / "inferdeck"), "serve", "--port", str(port), "--db", str(tmp / "serve.db")]
    # Its log (a line for every slow request) would bury the figures: it goes to a file.
    with open(tmp / "serve.log", "wb") as log:
        proc = subprocess.Popen(pinned(0, command), cwd=REPO, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"inferdeck serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
                if answer.status == 200:
                    return proc, port
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError("inferdeck serve did not get ready")


def perf_analyzer_part(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """inferdeck load and perf_analyzer, alternating, against one `inferdeck serve`."""
    if not PERF_ANALYZER.exists():
        sys.exit(f"bench_load: {PERF_ANALYZER} is missing")
    proc, port = serve(tmp)
    url = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {"seconds": args.pa_seconds}
    try:
        for c in (1, 8):
            runs: list[dict[str, Any]] = []
            for i in range(args.repeat):
                server_before = tree_cpu_s(proc.pid)
                s = inferdeck_load(
                    url,
                    tmp,
                    ["--concurrency", str(c), "--duration", str(args.pa_seconds)],
                    f"pa-inferdeck-{c}-{i}",
                    protocol=["--protocol", "oip", "--model", "iris"],
                )
                server_mid = tree_cpu_s(proc.pid)
                pa = perf_analyzer(port, c)
                server_after = tree_cpu_s(proc.pid)
                n = max(s["accepted"], 1)
                ours = {
                    "rps": s["throughput_per_s"],
                    "p50_ms": s["latency_ms"]["p50"],
                    "p99_ms": s["latency_ms"]["p99"],
                    "failed": s["failed"],
                    "cpu_us_per_request": s["cpu_s"] / n * 1e6,
                    "server_cpu_us_per_request": (server_mid - server_before) / n * 1e6,
                    # The server-side sources were on (found on their own): the run polled
                    # them throughout, and its figures hold with them.
                    "server_source": (s.get("server") or {}).get("source"),
                    "server_requests": (s.get("server") or {}).get("requests"),
                }
                # perf_analyzer's warm-up and unstable windows count too: the server's own
                # count of what it answered is the right divisor, not the last window's.
                pa_n = max(pa["server_count"], 1.0)
                theirs = {
                    "rps": pa["rps"],
                    "p50_ms": pa["p50_ms"],
                    "server_cpu_us_per_request": (server_after - server_mid) / pa_n * 1e6,
                    "cpu_s": pa["cpu_s"],
                }
                run = {
                    "inferdeck": ours,
                    "perf_analyzer": theirs,
                    "rps_ratio": ours["rps"] / theirs["rps"],
                    "p50_ratio": ours["p50_ms"] / theirs["p50_ms"],
                }
                runs.append(run)
                print(
                    f"c={c} run {i + 1}: inferdeck {ours['rps']:,.0f}/s p50 "
                    f"{ours['p50_ms']:.3f} ms ({ours['cpu_us_per_request']:.0f} µs CPU, server "
                    f"{ours['server_cpu_us_per_request']:.0f} µs) | perf_analyzer "
                    f"{theirs['rps']:,.0f}/s p50 {theirs['p50_ms']:.3f} ms (server "
                    f"{theirs['server_cpu_us_per_request']:.0f} µs) | ratio "
                    f"{run['rps_ratio']:.2f}× rps, {run['p50_ratio']:.2f}× p50 | server figures "
                    f"from {ours['server_source']} ({ours['server_requests']} requests)",
                    flush=True,
                )
            figures[f"c{c}"] = {
                "inferdeck_rps": median(runs, "inferdeck", "rps"),
                "inferdeck_p50_ms": median(runs, "inferdeck", "p50_ms"),
                "inferdeck_cpu_us_per_request": median(runs, "inferdeck", "cpu_us_per_request"),
                "perf_analyzer_rps": median(runs, "perf_analyzer", "rps"),
                "perf_analyzer_p50_ms": median(runs, "perf_analyzer", "p50_ms"),
                "rps_ratio": median(runs, "rps_ratio"),
                "p50_ratio": median(runs, "p50_ratio"),
                "server_cpu_us_inferdeck": median(runs, "inferdeck", "server_cpu_us_per_request"),
                "server_cpu_us_perf_analyzer": median(
                    runs, "perf_analyzer", "server_cpu_us_per_request"
                ),
                "runs": runs,
            }
    finally:
        stop(proc)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=int, default=200, help="fidelity runs, requests/s")
    parser.add_argument("--fidelity-seconds", type=int, default=5)
    parser.add_argument("--stall-s", type=float, default=1.0)
    parser.add_argument("--cpu-rate", type=int, default=1000, help="CPU part, requests/s")
    parser.add_argument("--cpu-concurrency", type=int, default=8, help="CPU part, users")
    parser.add_argument("--pa-seconds", type=int, default=10, help="inferdeck's runs there")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    nginx_bin = nginx_binary()
    if nginx_bin is None and {"throughput", "cpu"} & set(parts):
        sys.exit("bench_load: nginx is not installed (make bench-load installs it)")
    # Parts not run this time keep their last figures.
    out = OUT / "load.json"
    figures: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    with tempfile.TemporaryDirectory(prefix="inferdeck-bench-load-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "payload.json").write_text(json.dumps(BODY))
        if {"throughput", "cpu"} & set(parts):
            assert nginx_bin is not None
            with Nginx(tmp, nginx_bin) as nginx:
                if "throughput" in parts:
                    figures |= throughput_part(args, tmp, nginx)
                if "cpu" in parts:
                    figures["cpu"] = cpu_part(args, tmp, nginx)
        if "fidelity" in parts:
            figures["fidelity"] = fidelity_part(args, tmp)
            figures["fidelity_runs"] = figures["fidelity"].pop("runs")
        if "perf_analyzer" in parts:
            figures["perf_analyzer"] = perf_analyzer_part(args, tmp)
    OUT.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    report(args, parts, figures)


def report(args: argparse.Namespace, parts: list[str], figures: dict[str, Any]) -> None:
    """The medians as a table, with each goal beside its figure."""
    rows: list[tuple[str, str, str]] = []
    if "throughput" in parts:
        wrk_rps = figures["wrk_rps"]
        rows += [
            ("inferdeck load, req/s", f"{figures['inferdeck_rps']:,.0f}", "≥ 2,000"),
            (
                "  its p50 / p99",
                f"{figures['inferdeck_p50_ms']:.2f} / {figures['inferdeck_p99_ms']:.2f} ms",
                "",
            ),
            ("Locust HttpUser, req/s", f"{figures['locust_rps']:,.0f}", ""),
            ("inferdeck / Locust", f"{figures['ratio_inferdeck_locust']:.2f}×", "≥ 1.2×"),
            ("wrk (ceiling), req/s", f"{wrk_rps:,.0f}" if wrk_rps else "not installed", ""),
        ]
    if "cpu" in parts:
        cpu = figures["cpu"]
        for name in (f"rate {args.cpu_rate}", f"concurrency {args.cpu_concurrency}"):
            each = cpu[name]
            rows += [
                (
                    f"CPU a request, {name}",
                    f"{each['cpu_us_per_request']:.0f} µs at {each['rps']:,.0f}/s",
                    "≤ 200 µs",
                ),
                (
                    "  without start-up",
                    f"{each['loop_cpu_us_per_request']:.0f} µs "
                    f"(start-up {cpu['startup_cpu_s']:.2f} s)",
                    "every request stored" if each["all_stored"] else "ROWS MISSING",
                ),
            ]
    if "fidelity" in parts:
        f = figures["fidelity"]
        rows += [
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
        ]
    if "perf_analyzer" in parts:
        for c in (1, 8):
            pa = figures["perf_analyzer"][f"c{c}"]
            rows += [
                (
                    f"c={c}: inferdeck / perf_analyzer",
                    f"{pa['inferdeck_rps']:,.0f} / {pa['perf_analyzer_rps']:,.0f}/s = "
                    f"{pa['rps_ratio']:.2f}×",
                    "≥ 0.9×",
                ),
                (
                    "  p50",
                    f"{pa['inferdeck_p50_ms']:.3f} / {pa['perf_analyzer_p50_ms']:.3f} ms = "
                    f"{pa['p50_ratio']:.2f}×",
                    "≤ 1.15×",
                ),
                (
                    "  server CPU a request",
                    f"{pa['server_cpu_us_inferdeck']:.0f} / "
                    f"{pa['server_cpu_us_perf_analyzer']:.0f} µs",
                    "",
                ),
            ]
    print(f"\nmedians of {args.repeat} runs; servers on core 0, each client on core 1:")
    for name, value, goal in rows:
        print(f"  {name:34} {value:>32}   {goal}")


if __name__ == "__main__":
    main()
