"""Benchmark of the local request path (issue: engine and storage). Run: `make bench`.

Measures, in one run on this machine:
1. persisted predictions/s for a 100,000-row JSONL file through the real `inferdeck predict`
   (every request, result and span committed), median of `--repeat` runs;
2. the same file's rows through a naive per-request path (one awaited metadata read, one
   executor round trip, one insert + commit per request), median of `--repeat` runs, and the
   ratio between the two;
3. an open loop at 1,000 requests/s offered for 30 s through `Engine.predict`, latency from the
   intended send time (no coordinated omission), percentiles from an HDR histogram: once as an
   HTTP caller's request (result row only) and once acknowledged first (`queued` row, then the
   result: the desktop form's path);
4. the storage footprint per tabular request after the 100k run (WAL checkpointed);
5. per task: the same file through a regression twin of iris (the same exported graph, its
   three outputs read as named numbers instead of classes) against iris itself, alternating,
   medians of `--repeat`; and the built-in text model (langid): its call's latency per request
   at batch 1 and its throughput at batch 32 (tokenizing included), and persisted texts/s
   through `inferdeck predict`. `--tasks-only` runs just this part.

Results print as a table and are saved to bench/out/predict.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiosqlite

from engine.contracts import PredictRequest
from engine.models import ModelRegistry
from engine.models.runtime import set_torch_threads
from engine.pipeline import EngineConfig, Origin
from engine.runs import begin_run, end_run
from engine.startup import started_engine
from engine.stats import new_histogram, percentiles_ms
from engine.work import FutureSink, Work
from storage.migrations import migrate

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def make_rows(n: int, seed: int = 7) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [
        {
            "sepal_length": round(rng.uniform(4.3, 7.9), 1),
            "sepal_width": round(rng.uniform(2.0, 4.4), 1),
            "petal_length": round(rng.uniform(1.0, 6.9), 1),
            "petal_width": round(rng.uniform(0.1, 2.5), 1),
        }
        for _ in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, float]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")


def run_cli_predict(
    src: Path, db: Path, model: str | None = None, models_dir: Path | None = None
) -> dict[str, Any]:
    env = {**os.environ, "INFERDECK_DB": str(db)}
    if models_dir is not None:
        env["INFERDECK_MODELS_DIR"] = str(models_dir)
    chosen = ["--model", model] if model else []
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "predict", str(src), *chosen, "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary


def footprint(db: Path) -> tuple[int, float]:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    return rows, db.stat().st_size / max(rows, 1)


async def naive_path(rows: list[dict[str, float]], db: Path, concurrency: int) -> float:
    """The plain "async route" shape: every request awaits its own metadata read, executor
    round trip and insert + commit."""
    registry = ModelRegistry.discover()
    model = registry.get("iris")
    assert model is not None
    model.load()
    with sqlite3.connect(db, isolation_level=None) as setup:
        setup.execute("PRAGMA journal_mode = WAL")
        migrate(setup)
    conn = await aiosqlite.connect(db)
    await conn.execute("PRAGMA synchronous = NORMAL")
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=2)
    it = iter(enumerate(rows))

    async def worker() -> None:
        for i, row in it:
            inputs = model.inputs.model_validate(row)
            async with conn.execute(
                "SELECT tier, enabled FROM clients WHERE client_id = ?", ("cli",)
            ) as cur:
                await cur.fetchone()
            probs = await loop.run_in_executor(
                executor, model.predict_batch, [model.features(inputs)]
            )
            label = model.labels[int(probs[0].argmax())]
            await conn.execute(
                "INSERT INTO requests (request_id, source, model, client_id, status, created_us,"
                " input, output) VALUES (?, 'naive', 'iris', 'cli', 'ok', ?, ?, ?)",
                (f"naive-{i}", time.time_ns() // 1000, json.dumps(row), json.dumps(label)),
            )
            await conn.commit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await conn.close()
    executor.shutdown()
    return len(rows) / elapsed


async def open_loop(db: Path, rate: float, seconds: float, acknowledge: bool) -> dict[str, Any]:
    """Constant arrival rate; each request's latency counts from its intended send time.
    `acknowledge`: also write each request as `queued` before its result (the desktop form's
    path) instead of only its result (an HTTP caller's)."""
    rows = make_rows(1000, seed=11)
    hist = new_histogram()
    errors = 0
    async with started_engine(db) as engine:
        run = await begin_run(engine.db, "bench-open-loop", {"rate": rate, "seconds": seconds})
        origin = Origin(run, FutureSink(), "bench", "api")
        total = int(rate * seconds)
        pending: set[asyncio.Task[Work]] = set()
        start = time.perf_counter_ns()
        step_ns = int(1e9 / rate)
        for i in range(total):
            intended = start + i * step_ns
            delay = (intended - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            request = PredictRequest(client_id="api", model="iris", input_payload=rows[i % 1000])
            task = asyncio.create_task(
                engine.predict(request, origin, accepted_ns=intended, acknowledge=acknowledge)
            )
            pending.add(task)
            task.add_done_callback(pending.discard)
        done = await asyncio.gather(*list(pending)) if pending else []
        del done
        await end_run(engine.db, run)
        summary = run.summary()
        errors = summary.failed + summary.rejected
        hist = run.histogram
    pct = percentiles_ms(hist)
    return {
        "offered_per_s": rate,
        "seconds": seconds,
        "completed": summary.ok,
        "errors": errors,
        "achieved_per_s": round(summary.ok / summary.duration_s, 1),
        "latency_ms": pct.model_dump(),
    }


def regression_twin(folder: Path) -> Path:
    """iris's exported graph under a regression manifest: the same work up to the output."""
    iris = ModelRegistry.discover().get("iris")
    assert iris is not None
    manifest = iris.manifest.model_dump(exclude_defaults=True)
    manifest.update(
        name="iris_regression",
        task="tabular-regression",
        labels=[],
        outputs=[{"name": f"out_{label}"} for label in iris.labels],
    )
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "model.pt2").write_bytes((iris.folder / iris.manifest.artifact).read_bytes())
    return folder


def text_call_figures(texts: list[str], repeat: int) -> dict[str, Any]:
    """langid's own call (tokenizing and inference, no engine): ms per request at batch 1,
    requests/s at batch 32; medians of `repeat` passes over the texts."""
    model = ModelRegistry.discover().get("langid")
    assert model is not None, "no built-in text model (make models)"
    threads = EngineConfig().torch_threads
    if threads is not None:  # as the engine runs it: on two cores more threads only contend
        set_torch_threads(threads)
    model.load()
    field = model.manifest.inputs[0].name
    inputs = [model.inputs(**{field: text}) for text in texts]
    single, batched = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        for one in inputs[:500]:
            model.predict_batch([model.features(one)])
        single.append((time.perf_counter() - start) / len(inputs[:500]) * 1000)
        start = time.perf_counter()
        for i in range(0, len(inputs), 32):
            model.predict_batch([model.features(one) for one in inputs[i : i + 32]])
        batched.append(len(inputs) / (time.perf_counter() - start))
    return {
        "batch1_ms_per_request": [round(v, 3) for v in single],
        "batch1_ms_median": round(statistics.median(single), 3),
        "batch32_per_s": [round(v) for v in batched],
        "batch32_per_s_median": round(statistics.median(batched)),
    }


def add_figures(tmp: Path, repeat: int) -> dict[str, Any]:
    """`inferdeck models add` of the 1 MB MLP example, as a user runs it: the whole command
    (interpreter and torch start-up included) and the seconds it reports for its own work."""
    source = REPO / "assets" / "examples" / "mlp_1mb.py"
    wall, own = [], []
    for i in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "engine.cli", "models", "add", str(source), "--json",
             "--models-dir", str(tmp / f"added-{i}")],
            capture_output=True, text=True, cwd=REPO, check=False,
        )  # fmt: skip
        wall.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"models add failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        own.append(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
    artifact = next((tmp / "added-0").glob("*/model.pt2"))
    return {
        "artifact_bytes": artifact.stat().st_size,
        "command_s": [round(v, 2) for v in wall],
        "command_median_s": round(statistics.median(wall), 2),
        "reported_median_s": round(statistics.median(own), 2),
    }


def task_figures(tmp: Path, src: Path, rows: int, repeat: int) -> dict[str, Any]:
    """Regression against classification on one graph, `models add`, and the text model."""
    models = tmp / "task-models"
    regression_twin(models / "iris_regression")
    rates: dict[str, list[float]] = {"iris": [], "iris_regression": []}
    for i in range(repeat):
        for name in rates:  # alternating, so drift on a shared machine hits both alike
            summary = run_cli_predict(src, tmp / f"{name}-{i}.db", name, models)
            assert summary["ok"] == rows, summary
            rates[name].append(summary["throughput_per_s"])
    cls, reg = (statistics.median(rates[n]) for n in ("iris", "iris_regression"))
    result: dict[str, Any] = {
        "rows": rows,
        "classifier_per_s": rates["iris"],
        "regression_per_s": rates["iris_regression"],
        "classifier_median_per_s": cls,
        "regression_median_per_s": reg,
        "regression_to_classifier": round(reg / cls, 3),
        "models_add": add_figures(tmp, repeat),
    }
    heldout = ModelRegistry.discover().get("langid")
    if heldout is None:
        return result
    lines = (heldout.folder / "heldout.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    result["text"] = {"texts": len(texts), **text_call_figures(texts, repeat)}
    text_src = tmp / "texts.jsonl"
    copies = max(1, 20_000 // len(texts))
    write_jsonl(text_src, [{"text": t} for t in texts] * copies)
    text_rates = []
    for i in range(repeat):
        summary = run_cli_predict(text_src, tmp / f"langid-{i}.db", "langid")
        assert summary["ok"] == len(texts) * copies, summary
        text_rates.append(summary["throughput_per_s"])
    result["text"]["file_rows"] = len(texts) * copies
    result["text"]["file_per_s"] = text_rates
    result["text"]["file_median_per_s"] = statistics.median(text_rates)
    return result


def print_tasks(t: dict[str, Any], repeat: int) -> None:
    print(
        f"regression against classification, {t['rows']:,} rows through inferdeck predict "
        f"(median of {repeat}): {t['regression_median_per_s']:,.0f}/s against "
        f"{t['classifier_median_per_s']:,.0f}/s = {t['regression_to_classifier']:.3f}x"
    )
    add = t["models_add"]
    print(
        f"inferdeck models add of a {add['artifact_bytes'] / 1e6:.2f} MB MLP: "
        f"{add['command_median_s']:.2f} s the whole command, {add['reported_median_s']:.2f} s "
        f"its own work (median of {repeat})"
    )
    text = t.get("text")
    if text:
        print(
            f"text model langid: {text['batch1_ms_median']:.3f} ms a request at batch 1, "
            f"{text['batch32_per_s_median']:,}/s at batch 32 (its call, tokenizing included); "
            f"{text['file_median_per_s']:,.0f}/s persisted through inferdeck predict "
            f"({text['file_rows']:,} texts)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--naive-rows", type=int, default=10_000)
    parser.add_argument("--naive-concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--tasks-only", action="store_true", help="only part 5 (per task)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = make_rows(args.rows)
        src = tmp / "iris.jsonl"
        write_jsonl(src, rows)
        if args.tasks_only:
            results["tasks"] = task_figures(tmp, src, args.rows, args.repeat)
            (OUT / "predict_tasks.json").write_text(json.dumps(results, indent=2) + "\n")
            print_tasks(results["tasks"], args.repeat)
            return

        engine_rates, naive_rates, bytes_per_row = [], [], []
        for i in range(args.repeat):
            db = tmp / f"engine-{i}.db"
            summary = run_cli_predict(src, db)
            assert summary["ok"] == args.rows, summary
            engine_rates.append(summary["throughput_per_s"])
            count, per_row = footprint(db)
            assert count == args.rows
            bytes_per_row.append(per_row)
            naive = asyncio.run(
                naive_path(rows[: args.naive_rows], tmp / f"naive-{i}.db", args.naive_concurrency)
            )
            naive_rates.append(naive)
            print(
                f"  repeat {i + 1}: engine {summary['throughput_per_s']:,.0f}/s, "
                f"naive {naive:,.0f}/s, {per_row:.0f} B/request",
                flush=True,
            )
        engine_median = statistics.median(engine_rates)
        naive_median = statistics.median(naive_rates)
        results["file_100k"] = {
            "rows": args.rows,
            "engine_per_s": engine_rates,
            "engine_median_per_s": engine_median,
            "naive_rows": args.naive_rows,
            "naive_concurrency": args.naive_concurrency,
            "naive_per_s": [round(r, 1) for r in naive_rates],
            "naive_median_per_s": round(naive_median, 1),
            "ratio_median": round(engine_median / naive_median, 1),
            "bytes_per_request_median": round(statistics.median(bytes_per_row), 1),
        }
        for ack in (False, True):
            key = "open_loop_acknowledged" if ack else "open_loop"
            results[key] = asyncio.run(open_loop(tmp / f"{key}.db", args.rate, args.seconds, ack))
        results["tasks"] = task_figures(tmp, src, args.rows, args.repeat)
    (OUT / "predict.json").write_text(json.dumps(results, indent=2) + "\n")
    f = results["file_100k"]
    print(
        f"persisted predictions/s, {f['rows']:,}-row JSONL (median of {args.repeat}): "
        f"{f['engine_median_per_s']:,.0f}"
    )
    print(
        f"naive per-request path (median, {f['naive_concurrency']} concurrent): "
        f"{f['naive_median_per_s']:,.0f}/s -> ratio {f['ratio_median']}x"
    )
    print(f"storage per tabular request: {f['bytes_per_request_median']:.0f} bytes")
    for key in ("open_loop", "open_loop_acknowledged"):
        ol = results[key]
        lat = ol["latency_ms"]
        print(
            f"{key} {ol['offered_per_s']:.0f}/s for {ol['seconds']:.0f} s: "
            f"{ol['completed']} ok, {ol['errors']} errors; latency ms p50 {lat['p50']:.2f} "
            f"p99 {lat['p99']:.2f} p99.9 {lat['p999']:.2f} max {lat['max']:.2f}"
        )
    print_tasks(results["tasks"], args.repeat)


if __name__ == "__main__":
    main()
