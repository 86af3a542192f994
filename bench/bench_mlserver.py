"""`inferdeck serve` against MLServer, the same torch model behind each. Run: `make bench-mlserver`.

Both servers answer OIP v2 infer (`POST /v2/models/iris/infer`) for the built-in `iris` model:
InferDeck with its engine (validation, dynamic batching, a committed SQLite row in a fresh
temporary database behind every 200), MLServer with a custom runtime
(bench/mlserver_runtime/iris_runtime.py) that loads the same `model.pt2` and computes the same
thing: the manifest's input order, its mean/std preprocessing, softmax under inference mode,
one torch intra-op thread as InferDeck uses. MLServer lives in its own environment,
`.venv-mlserver` (its pins clash with this project's), and keeps its defaults apart from the
ports (HTTP, gRPC and metrics each on a free local port), the host (127.0.0.1) and, with
`--mlserver-workers`, `parallel_workers`.

One load tool and one body for both: wrk, closed loop, `--connections` connections, posting
the per-field inputs exactly as InferDeck's metadata (`GET /v2/models/iris`) lists them. Each
server is started once, checked (both must answer the body with the same label and scores),
warmed up, then measured in alternating rounds (InferDeck, MLServer, InferDeck, ...) and stopped
at the end. Every round, warm-ups included, must be clean: wrk's own error counts (status ≥ 400,
connect, read, write, timeout) from its Lua `done` hook, and every request line the server logged
during the round must be a 200. Any failure stops the run: a 400 is not throughput.

Medians per server and the ratios InferDeck / MLServer print as a table, then as one JSON line;
the rounds are saved to bench/out/mlserver.json.
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
import time
from pathlib import Path
from typing import Any

import httpx
from process_cpu import tree_cpu_s

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
RUNTIME = REPO / "bench" / "mlserver_runtime"
MLSERVER_VENV = REPO / ".venv-mlserver"
MODEL = "iris"
MODEL_DIR = REPO / "engine" / "models" / "builtin" / MODEL
INFER = f"/v2/models/{MODEL}/infer"
# One flower (bench_serve.py's), by field name.
VALUES = {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}
SERVERS = ("inferdeck", "mlserver")

# wrk's `done` hook prints its own counts as one line: errors.status counts answers ≥ 400.
LUA = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_DONE {{"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,'
      .. '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%.1f,"p99_us":%.1f}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
# One request line per answer in each server's log: InferDeck's JSON access line, uvicorn's
# access line in MLServer's (on by default: MLServer's `debug` setting is true).
INFERDECK_LINE = re.compile(rb'"route":"(?P<route>[^"]*)","status":(?P<status>\d{3})')
MLSERVER_LINE = re.compile(
    rb'"(?:GET|POST|PUT|DELETE|HEAD) (?P<route>\S+) HTTP/[\d.]+" (?P<status>\d{3})'
)


class BenchError(RuntimeError):
    """A round or a server that failed: the benchmark stops rather than count it."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """One server process started by the script: its URL, its log, and what it logged."""

    def __init__(self, name: str, command: list[str], port: int, log: Path, **popen: Any) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.pattern = INFERDECK_LINE if name == "inferdeck" else MLSERVER_LINE
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            command, stdout=self._log_file, stderr=subprocess.STDOUT, **popen
        )

    def wait_ready(self, seconds: float = 120) -> None:
        """Until the server says the model is ready (OIP's model readiness)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}); see {self.log}")
            try:
                if httpx.get(f"{self.url}/v2/models/{MODEL}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise BenchError(f"{self.name}: {MODEL} not ready in {seconds:.0f} s; see {self.log}")

    def log_size(self) -> int:
        self._log_file.flush()
        return self.log.stat().st_size

    def statuses_since(self, offset: int) -> dict[str, int]:
        """Infer answers the server logged after `offset` bytes of its log, by status."""
        with self.log.open("rb") as fh:
            fh.seek(offset)
            text = fh.read()
        counts: dict[str, int] = {}
        for match in self.pattern.finditer(text):
            if match["route"] == INFER.encode():
                counts[match["status"].decode()] = counts.get(match["status"].decode(), 0) + 1
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


def wrk(server: Server, args: argparse.Namespace, seconds: float, script: Path) -> dict[str, Any]:
    """One checked round of wrk against `server`: figures, or a BenchError on any failure."""
    offset = server.log_size()
    cpu_before = tree_cpu_s(server.proc.pid)
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(script),
        server.url + INFER,
    ]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu_s = tree_cpu_s(server.proc.pid) - cpu_before
    found = re.search(r"^WRK_DONE (\{.*\})$", run.stdout, re.MULTILINE)
    if run.returncode != 0 or found is None:
        raise BenchError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    done: dict[str, Any] = json.loads(found.group(1))
    time.sleep(0.2)  # the last answers' log lines
    logged = server.statuses_since(offset)
    errors = {k: v for k, v in done.items() if k.endswith(("_errors", "timeouts")) and v}
    not_ok = {status: n for status, n in logged.items() if status != "200"}
    if logged.get("200", 0) < done["requests"]:  # the log check would have checked nothing
        not_ok["fewer 200s logged than wrk counted"] = logged.get("200", 0)
    if errors or not_ok or done["requests"] == 0:
        raise BenchError(
            f"{server.name}: failed requests: wrk {errors or 'none'}, "
            f"server log {not_ok or 'none'} of {done['requests']} requests; "
            f"see {server.log}\n{run.stdout}"
        )
    return {
        "rps": done["requests"] / (done["duration_us"] / 1e6),
        "requests": done["requests"],
        "logged_200": logged.get("200", 0),
        "p50_ms": done["p50_us"] / 1000,
        "p99_ms": done["p99_us"] / 1000,
        # The server's processes' CPU time per answer: steadier than req/s on a shared machine.
        "cpu_us": cpu_s / done["requests"] * 1e6,
    }


def mlserver_facts(env: dict[str, str]) -> dict[str, Any]:
    """MLServer's version and its default `parallel_workers`, from its own environment."""
    code = (
        "import json, mlserver, mlserver.settings as s;"
        "print(json.dumps({'version': mlserver.__version__,"
        " 'default_parallel_workers': s.Settings().parallel_workers}))"
    )
    python = MLSERVER_VENV / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    facts: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return facts


def mlserver_folder(tmp: Path, parallel_workers: int) -> tuple[Path, int]:
    """A copy of bench/mlserver_runtime with this run's ports, workers and model path."""
    folder = tmp / "mlserver"
    folder.mkdir()
    shutil.copy(RUNTIME / "iris_runtime.py", folder)
    settings = json.loads((RUNTIME / "settings.json").read_text())
    port = free_port()
    settings |= {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": parallel_workers,
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    model = json.loads((RUNTIME / "model-settings.json").read_text())
    model["parameters"]["uri"] = str(MODEL_DIR)
    (folder / "model-settings.json").write_text(json.dumps(model, indent=2))
    return folder, port


def infer_body(url: str) -> bytes:
    """The body both servers get: one row, one tensor per input InferDeck's metadata lists."""
    metadata = httpx.get(f"{url}/v2/models/{MODEL}", timeout=10).raise_for_status().json()
    inputs = [
        {
            "name": spec["name"],
            "datatype": spec["datatype"],
            "shape": [1 if d == -1 else d for d in spec["shape"]],
            "data": [VALUES[spec["name"]]],
        }
        for spec in metadata["inputs"]
    ]
    return json.dumps({"inputs": inputs}, separators=(",", ":")).encode()


def check_same_answer(servers: dict[str, Server], body: bytes) -> dict[str, Any]:
    """Both servers' outputs for the body: the same label, scores within InferDeck's rounding."""
    answers: dict[str, dict[str, Any]] = {}
    for name, server in servers.items():
        answer = httpx.post(
            server.url + INFER, content=body, headers={"Content-Type": "application/json"}
        )
        if answer.status_code != 200:
            raise BenchError(f"{name} answered {answer.status_code}: {answer.text}")
        answers[name] = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    a, b = answers["inferdeck"], answers["mlserver"]
    # InferDeck rounds scores to 4 decimals; MLServer's runtime sends them as computed.
    close = len(a["scores"]) == len(b["scores"]) and all(
        abs(x - y) <= 1e-3 for x, y in zip(a["scores"], b["scores"], strict=True)
    )
    if a["label"] != b["label"] or not close:
        raise BenchError(f"the servers disagree: {answers}")
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per server")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before rounds")
    parser.add_argument("--inferdeck-workers", type=int, default=1, metavar="N")
    parser.add_argument(
        "--mlserver-workers",
        type=int,
        metavar="N",
        help="MLServer's parallel_workers (default: MLServer's own default)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench_mlserver: wrk is not installed (make bench-mlserver installs it)")
    if not (MLSERVER_VENV / "bin" / "mlserver").exists():
        sys.exit(f"bench_mlserver: no MLServer in {MLSERVER_VENV} (make bench-mlserver makes it)")
    # Neither server takes settings from this shell: MLSERVER_* would reach MLServer's settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "INFERDECK_"))}
    env["PYTHONUNBUFFERED"] = "1"  # each request's log line reaches the log as it is written
    facts = mlserver_facts(env)
    workers = (
        args.mlserver_workers
        if args.mlserver_workers is not None
        else facts["default_parallel_workers"]
    )

    with tempfile.TemporaryDirectory(prefix="bench_mlserver.") as tmp_name:
        tmp = Path(tmp_name)
        servers: dict[str, Server] = {}
        try:
            id_port = free_port()
            servers["inferdeck"] = Server(
                "inferdeck",
                [
                    *(sys.executable, "-m", "engine.cli", "serve"),
                    *("--port", str(id_port), "--db", str(tmp / "inferdeck.db")),
                    *("--workers", str(args.inferdeck_workers)),
                ],
                id_port,
                tmp / "inferdeck.log",
                cwd=REPO,
                env=env | {"PYTHONPATH": str(REPO)},
            )
            folder, ml_port = mlserver_folder(tmp, workers)
            servers["mlserver"] = Server(
                "mlserver",
                [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(folder)],
                ml_port,
                tmp / "mlserver.log",
                cwd=tmp,  # MLServer's .metrics and .envs folders go here
                env=env,
            )
            for server in servers.values():
                server.wait_ready()
            body = infer_body(servers["inferdeck"].url)
            answers = check_same_answer(servers, body)
            script = tmp / "infer.lua"
            script.write_text(LUA.format(body=body.decode()))
            for server in servers.values():
                wrk(server, args, args.warmup, script)
            runs: list[dict[str, Any]] = []
            for i in range(args.repeat):
                for name in SERVERS:
                    r = wrk(servers[name], args, args.duration, script)
                    runs.append({"round": i + 1, "server": name} | r)
                    print(
                        f"round {i + 1} {name:9} {r['rps']:>9,.0f} req/s  p50 {r['p50_ms']:6.2f} "
                        f"p99 {r['p99_ms']:6.2f} ms  {r['cpu_us']:5,.0f} CPU µs/req  "
                        f"{r['requests']:,} requests, all 200",
                        flush=True,
                    )
        except BenchError as exc:
            OUT.mkdir(parents=True, exist_ok=True)
            for name, server in servers.items():
                server.stop()
                shutil.copy(server.log, OUT / f"mlserver-bench-{name}.log")
            sys.exit(f"bench_mlserver: FAILED: {exc}\n(server logs copied to {OUT})")
        finally:
            for server in servers.values():
                server.stop()

    def med(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in runs if r["server"] == name))

    keys = ("rps", "p50_ms", "p99_ms", "cpu_us")
    medians = {name: {key: med(name, key) for key in keys} for name in SERVERS}
    ratio = {key: medians["inferdeck"][key] / medians["mlserver"][key] for key in keys}
    summary = {
        "bench": "mlserver",
        "model": MODEL,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "inferdeck_workers": args.inferdeck_workers,
        "mlserver_version": facts["version"],
        "mlserver_parallel_workers": workers,
        "mlserver_default_parallel_workers": facts["default_parallel_workers"],
        "inferdeck_rps": medians["inferdeck"]["rps"],
        "inferdeck_p50_ms": medians["inferdeck"]["p50_ms"],
        "inferdeck_p99_ms": medians["inferdeck"]["p99_ms"],
        "mlserver_rps": medians["mlserver"]["rps"],
        "mlserver_p50_ms": medians["mlserver"]["p50_ms"],
        "mlserver_p99_ms": medians["mlserver"]["p99_ms"],
        "ratio_rps": ratio["rps"],
        "ratio_p50": ratio["p50_ms"],
        "ratio_p99": ratio["p99_ms"],
        "inferdeck_cpu_us_per_request": medians["inferdeck"]["cpu_us"],
        "mlserver_cpu_us_per_request": medians["mlserver"]["cpu_us"],
        "ratio_cpu_per_request": ratio["cpu_us"],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mlserver.json").write_text(
        json.dumps(summary | {"answers": answers, "runs": runs}, indent=2) + "\n"
    )
    print(
        f"\nmedians of {args.repeat} rounds of {args.duration:g} s, {args.connections} "
        f"connections, MLServer {facts['version']} with parallel_workers={workers}:"
    )
    print(f"  {'':24} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11}")
    for name in SERVERS:
        m = medians[name]
        print(
            f"  {name:24} {m['rps']:>10,.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} "
            f"{m['cpu_us']:>11,.0f}"
        )
    print(
        f"  {'InferDeck / MLServer':24} {ratio['rps']:>9.2f}× {ratio['p50_ms']:>7.2f}× "
        f"{ratio['p99_ms']:>7.2f}× {ratio['cpu_us']:>10.2f}×"
    )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
