"""The local request path end to end, without Qt or a subprocess: a real SQLite file, the real
model registry, a real thread-pool executor (wrapped to count and optionally slow down inference
jobs) and the real `Engine`.

Each scenario runs in its own event loop (`asyncio.run`) and always stops the engine, closes the
database and shuts the executor down, since warnings (unclosed resources included) are errors.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from engine_sink import ListSink

import storage
from engine.admission import AdmissionQueue, QueueClosedError, QueueFullError
from engine.contracts import Prediction, PredictRequest
from engine.models import ModelRegistry
from engine.models.runtime import FeatureRow, LoadedModel
from engine.pipeline import Engine, EngineConfig, Origin
from engine.runs import begin_run
from engine.stats import RunRecorder, StatsSnapshot
from engine.validation import error
from engine.work import Work
from storage.database import Database

T = TypeVar("T")

SETOSA: dict[str, Any] = {
    "sepal_length": 5.1,
    "sepal_width": 3.5,
    "petal_length": 1.4,
    "petal_width": 0.2,
}
STAGES = ["validate", "metadata", "queue_wait", "inference", "write"]


# -- helpers ------------------------------------------------------------------------------------


class CountingExecutor(ThreadPoolExecutor):
    """A thread pool that records every inference job (`predict_batch`) it is given, and can
    make each one take at least `delay_s` (a slow model)."""

    def __init__(self, workers: int = 2, delay_s: float = 0.0) -> None:
        super().__init__(workers)
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        # The batcher's inference job: the model's rows are its last argument.
        if getattr(fn, "__name__", "") not in ("predict_batch", "_predict_outputs"):
            return super().submit(fn, *args, **kwargs)
        self.batch_sizes.append(len(args[-1]))
        delay = self.delay_s

        def job() -> T:
            if delay:
                time.sleep(delay)
            return fn(*args, **kwargs)

        return super().submit(job)


@dataclass
class Rig:
    """An engine on a real SQLite file with a counting executor, for one test."""

    engine: Engine
    db: Database
    run: RunRecorder
    executor: CountingExecutor

    @property
    def path(self) -> Path:
        return self.db.path


@asynccontextmanager
async def running_engine(
    tmp_path: Path,
    registry: ModelRegistry,
    config: EngineConfig | None = None,
    *,
    delay_s: float = 0.0,
) -> AsyncIterator[Rig]:
    executor = CountingExecutor(2, delay_s)
    try:
        db = await storage.open_database(tmp_path / "e.db")
        try:
            eng = Engine(db, registry, executor, config or EngineConfig())
            await eng.start()
            try:
                run = await begin_run(db, "test", {"test": True})
                yield Rig(eng, db, run, executor)
            finally:
                await eng.stop()
        finally:
            await db.close()
    finally:
        executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.discover()


def rows_by_id(path: Path, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Committed rows, read through a fresh connection (what another process would see)."""
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(request_ids), 500):
            chunk = request_ids[start : start + 500]
            marks = ",".join("?" for _ in chunk)
            for row in conn.execute(
                f"SELECT * FROM requests WHERE request_id IN ({marks})", chunk
            ).fetchall():
                found[row["request_id"]] = dict(row)
        return found


def one_row(path: Path, request_id: str) -> dict[str, Any] | None:
    return rows_by_id(path, [request_id]).get(request_id)


def iris_request(client_id: str = "api", **changes: Any) -> PredictRequest:
    payload = {**SETOSA, **changes.pop("payload", {})}
    return PredictRequest(client_id=client_id, model="iris", input_payload=payload, **changes)


def iris_row(i: int) -> dict[str, float]:
    """Bare input rows that vary a little (valid for the iris manifest)."""
    return {
        "sepal_length": 4.5 + (i % 30) / 10,
        "sepal_width": 2.0 + (i % 20) / 10,
        "petal_length": 1.0 + (i % 50) / 10,
        "petal_width": 0.1 + (i % 24) / 10,
    }


async def submit_rows(eng: Engine, origin: Origin, count: int, start: int = 0) -> list[Work]:
    validator = eng.validator("iris")
    works = []
    for i in range(start, start + count):
        work = await eng.accept(iris_row(i), validator, origin, source_row=i)
        assert work.status == "queued", work.error
        await eng.submit(work)
        works.append(work)
    return works


def check_spans(spans: list[Any], names: list[str]) -> None:
    assert [s[0] for s in spans] == names
    starts = [s[1] for s in spans]
    assert starts == sorted(starts), spans
    for span in spans:
        assert span[1] >= 0 and span[2] >= 0, span


# -- the happy path -----------------------------------------------------------------------------


def test_predict_returns_a_committed_ok_result_with_spans(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    async def scenario() -> None:
        async with running_engine(tmp_path, registry) as rig:
            origin = Origin(rig.run, ListSink(), "form", client_id="gui")
            work = await rig.engine.predict(iris_request("gui", request_id="req-setosa-1"), origin)

            assert work.status == "ok", work.error
            assert work.request_id == "req-setosa-1"
            assert work.output is not None and work.output["label"] == "setosa"
            assert set(work.output["scores"]) == {"setosa", "versicolor", "virginica"}
            assert work.output["scores"]["setosa"] > 0.9
            check_spans(work.spans, STAGES)
            assert work.spans[3][3] == {"batch_size": 1}
            assert work.latency_us > 0
            total = work.spans[-1][1] + work.spans[-1][2]
            assert total == pytest.approx(work.latency_us, abs=5)

            response = work.response()
            assert response.request_id == "req-setosa-1"
            assert response.model == "iris"
            assert isinstance(response.outputs, Prediction) and response.outputs.label == "setosa"
            assert [s.name for s in response.spans] == STAGES

            # Committed before it was returned: visible to a separate connection right now.
            row = one_row(rig.path, "req-setosa-1")
            assert row is not None
            assert row["status"] == "ok"
            assert row["run_id"] == rig.run.run_id
            assert row["model"] == "iris" and row["client_id"] == "gui"
            assert row["source"] == "form"
            assert row["latency_us"] > 0
            assert row["finished_us"] >= row["created_us"]
            assert json.loads(row["output"])["label"] == "setosa"
            assert row["error"] is None
            assert json.loads(row["input"]) == SETOSA
            stored = json.loads(row["spans"])
            check_spans(stored, STAGES)
            assert stored[3][3] == {"batch_size": 1}
            assert rig.run.ok == 1 and rig.run.accepted == 1

            # Without a request_id, one is generated (UUIDv7) and is the row's key.
            other = await rig.engine.predict(iris_request("gui"), origin)
            assert other.status == "ok"
            assert other.request_id != "req-setosa-1" and len(other.request_id) == 36
            assert one_row(rig.path, other.request_id) is not None

    asyncio.run(scenario())


def test_nothing_is_delivered_before_its_row_is_committed(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    class CommitCheckingSink(ListSink):
        """Checks, inside `deliver`, that every delivered row is already visible (and final) to
        another connection. Assertions raised here would be swallowed by the writer's callback
        handling, so problems are collected and checked afterwards."""

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path
            self.problems: list[str] = []

        def deliver(self, done: list[Work]) -> None:
            ids = [w.request_id for w in done]
            committed = rows_by_id(self.path, ids)
            for work in done:
                row = committed.get(work.request_id)
                if row is None:
                    self.problems.append(f"{work.request_id} delivered before its commit")
                elif row["status"] != work.status:
                    self.problems.append(f"{work.request_id}: {row['status']} != {work.status}")
            super().deliver(done)

    async def scenario() -> None:
        async with running_engine(tmp_path, registry, EngineConfig(max_batch=16)) as rig:
            sink = CommitCheckingSink(rig.path)
            origin = Origin(rig.run, sink, "file", client_id="cli")
            works = await submit_rows(rig.engine, origin, 300)
            # A few rejected rows go through the same group commit.
            validator = rig.engine.validator("iris")
            for _ in range(5):
                bad = await rig.engine.accept({**SETOSA, "petal_width": "x"}, validator, origin)
                assert bad.status == "rejected"
                rig.engine.record_rejection(bad)
                works.append(bad)
            unreadable = error("invalid_json", "not valid JSON")
            rig.engine.reject(origin, unreadable, source_row=99, input_text="{oops")

            await sink.wait_for(len(works) + 1)
            assert sink.problems == []
            assert len(sink.done) == len(works) + 1
            statuses = [w.status for w in sink.done]
            assert statuses.count("ok") == 300 and statuses.count("rejected") == 6
            assert (rig.run.ok, rig.run.rejected, rig.run.accepted) == (300, 6, 306)
            assert rig.engine.in_flight == 0

    asyncio.run(scenario())


# -- validation and metadata rejections ---------------------------------------------------------


def test_invalid_input_is_rejected_before_any_db_or_model_work(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    cases: list[tuple[PredictRequest, str, str]] = [
        (iris_request(payload={"sepal_length": "wide"}), "validation_error", "sepal_length"),
        (iris_request(payload={"colour": "blue"}), "validation_error", "colour"),
        (iris_request(payload={"petal_width": math.nan}), "validation_error", "petal_width"),
        (iris_request(payload={"petal_width": 99.0}), "validation_error", "petal_width"),
        (
            PredictRequest(client_id="api", model="nope", input_payload=SETOSA),
            "unknown_model",
            "model",
        ),
    ]

    async def scenario() -> None:
        async with running_engine(tmp_path, registry) as rig:
            origin = Origin(rig.run, ListSink(), "api", client_id="api")
            results = []
            for request, code, field in cases:
                work = await rig.engine.predict(request, origin)
                results.append(work)
                assert work.status == "rejected", request
                assert work.error is not None
                assert work.error.code == code, work.error
                assert work.error.request_id == work.request_id
                fields = [d.field or "" for d in work.error.details]
                assert any(f.endswith(field) for f in fields), (field, work.error)
                assert work.output is None
                # Only the validate stage ran (then the cheap, batched write).
                assert [s[0] for s in work.spans] == ["validate", "write"]

            # No metadata lookup (no client was read) and no inference job happened.
            assert rig.engine.clients.misses == 0
            assert rig.executor.batch_sizes == []
            assert rig.run.rejected == len(cases) and rig.run.ok == 0

            # Each rejection is still recorded with its error and input.
            rows = rows_by_id(rig.path, [w.request_id for w in results])
            assert len(rows) == len(cases)
            for work in results:
                row = rows[work.request_id]
                assert row["status"] == "rejected"
                assert work.error is not None
                assert json.loads(row["error"])["code"] == work.error.code
                assert row["input"]

            # A bare row (a file's line) with NaN keeps the NaN visible in the stored input.
            bare = await rig.engine.accept(
                {**SETOSA, "petal_width": math.nan}, rig.engine.validator("iris"), origin
            )
            assert bare.status == "rejected" and bare.error is not None
            assert [(d.field, d.type) for d in bare.error.details] == [
                ("petal_width", "finite_number")
            ]
            assert bare.input_json is not None and "NaN" in bare.input_json

    asyncio.run(scenario())


def test_disabled_client_is_rejected(tmp_path: Path, registry: ModelRegistry) -> None:
    async def scenario() -> None:
        async with running_engine(tmp_path, registry) as rig:
            await rig.db.writer.execute(
                "INSERT INTO clients (client_id, display_name, tier, enabled, default_model) "
                "VALUES (?, ?, ?, ?, ?)",
                ("blocked", "Blocked caller", "standard", 0, "iris"),
            )
            origin = Origin(rig.run, ListSink(), "api", client_id="api")
            work = await rig.engine.predict(iris_request("blocked", request_id="b-1"), origin)
            assert work.status == "rejected"
            assert work.error is not None and work.error.code == "client_disabled"
            assert [d.field for d in work.error.details] == ["client_id"]
            assert rig.executor.batch_sizes == []
            row = one_row(rig.path, "b-1")
            assert row is not None and row["status"] == "rejected"
            assert json.loads(row["error"])["code"] == "client_disabled"

            # An enabled client still gets through; unknown clients run at the standard tier.
            ok = await rig.engine.predict(iris_request("someone-new"), origin)
            assert ok.status == "ok" and ok.priority == 1

    asyncio.run(scenario())


def test_rejected_request_echoes_the_callers_request_id(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    async def scenario() -> None:
        async with running_engine(tmp_path, registry) as rig:
            origin = Origin(rig.run, ListSink(), "api", client_id="api")
            request = iris_request(payload={"sepal_length": "wide"}, request_id="mine-1")
            work = await rig.engine.predict(request, origin)
            assert work.status == "rejected"
            assert work.request_id == "mine-1"

    asyncio.run(scenario())


def test_rejected_nan_stays_visible_through_predict(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    async def scenario() -> None:
        async with running_engine(tmp_path, registry) as rig:
            origin = Origin(rig.run, ListSink(), "api", client_id="api")
            request = iris_request(payload={"petal_width": math.inf})
            work = await rig.engine.predict(request, origin)
            assert work.status == "rejected" and work.error is not None
            assert work.error.details[0].type == "finite_number"
            assert work.input_json is not None and "Infinity" in work.input_json

    asyncio.run(scenario())


# -- priority and the admission queue ----------------------------------------------------------


def test_interactive_request_overtakes_a_running_batch(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    config = EngineConfig(max_batch=8, max_inflight_batches=1, max_wait_ms=0.5)

    async def scenario() -> None:
        async with running_engine(tmp_path, registry, config, delay_s=0.02) as rig:
            sink = ListSink()
            batch_origin = Origin(rig.run, sink, "file", client_id="cli")  # tier: batch
            works = await submit_rows(rig.engine, batch_origin, 200)
            assert {w.priority for w in works} == {2}
            await sink.wait_for(8)  # the batch job is under way

            form = Origin(rig.run, ListSink(), "form", client_id="gui")  # tier: interactive
            work = await rig.engine.predict(iris_request("gui", request_id="urgent"), form)
            overtaken = len(works) - len(sink.done)
            assert work.status == "ok" and work.priority == 0
            # Submitted after all 200, it finished while most of them were still waiting.
            assert overtaken > 120, overtaken

            await sink.wait_for(200)
            assert [w.status for w in sink.done] == ["ok"] * 200
            # Batch rows keep their own (FIFO) order.
            assert [w.source_row for w in sink.done] == list(range(200))
            # The tiers came from the clients table, read once per client (TTL cache).
            assert rig.engine.clients.misses == 2

    asyncio.run(scenario())


def test_admission_queue_priority_and_fifo() -> None:
    async def scenario() -> None:
        queue: AdmissionQueue[str] = AdmissionQueue(capacity=100)
        for item, priority in [
            ("b1", 2),
            ("s1", 1),
            ("b2", 2),
            ("i1", 0),
            ("s2", 1),
            ("i2", 0),
            ("b3", 2),
            ("x", 9),  # out-of-range priorities are clamped to the nearest level
            ("y", -3),
        ]:
            queue.put_nowait(item, priority)
        assert len(queue) == 9
        assert await queue.take(3, 0) == ["i1", "i2", "y"]
        assert await queue.take(100, 0) == ["s1", "s2", "b1", "b2", "b3", "x"]
        assert len(queue) == 0

    asyncio.run(scenario())


def test_admission_queue_take_waits_for_a_batch_to_fill() -> None:
    async def scenario() -> None:
        queue: AdmissionQueue[int] = AdmissionQueue(capacity=10)
        queue.put_nowait(1, 1)

        async def late() -> None:
            await asyncio.sleep(0.01)
            queue.put_nowait(2, 1)

        task = asyncio.create_task(late())
        started = time.monotonic()
        assert await queue.take(4, 0.2) == [1, 2]  # waited for more, up to max_wait
        elapsed = time.monotonic() - started
        assert 0.15 < elapsed < 2.0
        await task

        queue.put_nowait(3, 1)
        queue.put_nowait(4, 1)
        started = time.monotonic()
        assert await queue.take(2, 5.0) == [3, 4]  # full batch: no waiting
        assert time.monotonic() - started < 1.0

        # An empty queue waits for the first item.
        taker = asyncio.create_task(queue.take(4, 0))
        await asyncio.sleep(0.01)
        assert not taker.done()
        queue.put_nowait(5, 0)
        assert await asyncio.wait_for(taker, 1) == [5]

    asyncio.run(scenario())


def test_admission_queue_backpressure_when_full() -> None:
    async def scenario() -> None:
        queue: AdmissionQueue[str] = AdmissionQueue(capacity=2)
        await queue.put("a", 1)
        await queue.put("b", 1)
        with pytest.raises(QueueFullError):
            queue.put_nowait("c", 0)

        waiting = asyncio.create_task(queue.put("c", 1))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        assert len(queue) == 2

        assert await queue.take(1, 0) == ["a"]
        await asyncio.wait_for(waiting, 1)
        assert len(queue) == 2
        assert await queue.take(10, 0) == ["b", "c"]

    asyncio.run(scenario())


def test_admission_queue_close_drains_then_ends() -> None:
    async def scenario() -> None:
        queue: AdmissionQueue[int] = AdmissionQueue(capacity=3)
        for i in range(3):
            queue.put_nowait(i, 1)
        blocked = asyncio.create_task(queue.put(99, 1))
        await asyncio.sleep(0.01)
        assert not blocked.done()

        queue.close()
        assert queue.closed
        # A producer waiting for room is released with an error, not left hanging.
        with pytest.raises(QueueClosedError):
            await asyncio.wait_for(blocked, 1)
        with pytest.raises(QueueClosedError):
            queue.put_nowait(4, 1)
        with pytest.raises(QueueClosedError):
            await queue.put(5, 1)

        # What was queued still drains (without waiting to fill a batch), then take ends.
        started = time.monotonic()
        assert await queue.take(2, 5.0) == [0, 1]
        assert await queue.take(10, 5.0) == [2]
        assert await queue.take(10, 5.0) == []
        assert time.monotonic() - started < 1.0

        # A consumer waiting on an empty queue is woken by close.
        empty: AdmissionQueue[int] = AdmissionQueue(capacity=3)
        taker = asyncio.create_task(empty.take(4, 0.5))
        await asyncio.sleep(0.01)
        empty.close()
        assert await asyncio.wait_for(taker, 1) == []

    asyncio.run(scenario())


# -- micro-batching -----------------------------------------------------------------------------


def test_micro_batching_makes_few_executor_jobs(tmp_path: Path, registry: ModelRegistry) -> None:
    config = EngineConfig(max_batch=64, max_wait_ms=2.0)

    async def scenario() -> None:
        async with running_engine(tmp_path, registry, config) as rig:
            sink = ListSink()
            origin = Origin(rig.run, sink, "file", client_id="cli")
            works = await submit_rows(rig.engine, origin, 1_000)
            await sink.wait_for(1_000)

            sizes = rig.executor.batch_sizes
            assert sum(sizes) == 1_000
            assert max(sizes) <= 64
            assert len(sizes) <= 100, sizes  # far fewer jobs than requests
            assert all(w.status == "ok" for w in sink.done)

            # Each request's inference span names the size of the batch it ran in.
            by_size: dict[int, int] = {}
            for work in works:
                inference = next(s for s in work.spans if s[0] == "inference")
                size = inference[3]["batch_size"]
                assert 1 <= size <= 64
                by_size[size] = by_size.get(size, 0) + 1
            assert sorted(by_size) == sorted(set(sizes))
            for size, count in by_size.items():
                assert count == size * sizes.count(size)

            # The stored spans carry it too.
            rows = rows_by_id(rig.path, [w.request_id for w in works[:50]])
            for row in rows.values():
                stored = json.loads(row["spans"])
                check_spans(stored, ["validate", "metadata", "queue_wait", "inference", "write"])
                assert 1 <= stored[3][3]["batch_size"] <= 64

    asyncio.run(scenario())


# -- model failure ------------------------------------------------------------------------------


def test_model_failure_fails_the_batch_and_the_engine_keeps_serving(
    tmp_path: Path, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = LoadedModel.predict_batch
    broken = {"iris": True}

    def flaky(self: LoadedModel, rows: list[FeatureRow]) -> np.ndarray:
        if broken.get(self.name):
            raise RuntimeError("boom")
        return original(self, rows)

    async def scenario() -> None:
        async with running_engine(tmp_path, registry) as rig:
            # Patched after start: loading (and its warm-up call) used the real method.
            monkeypatch.setattr(LoadedModel, "predict_batch", flaky)
            origin = Origin(rig.run, ListSink(), "api", client_id="api")

            failed = await rig.engine.predict(iris_request(request_id="f-1"), origin)
            assert failed.status == "failed"
            assert failed.error is not None and failed.error.code == "inference_failed"
            assert "boom" in failed.error.message
            assert failed.output is None
            assert [s[0] for s in failed.spans] == STAGES
            row = one_row(rig.path, "f-1")
            assert row is not None and row["status"] == "failed"
            assert json.loads(row["error"])["code"] == "inference_failed"
            assert row["output"] is None

            broken["iris"] = False
            ok = await rig.engine.predict(iris_request(request_id="f-2"), origin)
            assert ok.status == "ok" and ok.output is not None
            assert ok.output["label"] == "setosa"
            assert (rig.run.failed, rig.run.ok) == (1, 1)
            assert rig.engine.in_flight == 0

    asyncio.run(scenario())


# -- live stats ---------------------------------------------------------------------------------


def test_live_stats_are_published_at_a_bounded_rate(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    async def scenario() -> None:
        async with running_engine(tmp_path, registry) as rig:
            snapshots: list[StatsSnapshot] = []
            rig.engine.subscribe(snapshots.append)
            origin = Origin(rig.run, ListSink(), "api", client_id="api")
            results = await asyncio.gather(
                *(rig.engine.predict(iris_request(), origin) for _ in range(50))
            )
            assert all(w.status == "ok" for w in results)

            snapshots.clear()
            await asyncio.sleep(0.55)
            count = len(snapshots)
            assert 2 <= count <= 8, count
            gaps = [b.at - a.at for a, b in itertools.pairwise(snapshots)]
            assert all(gap >= 0.08 for gap in gaps), gaps

            last = snapshots[-1]
            assert last.completed >= 50
            assert last.errors == 0
            assert last.p50_ms > 0 and last.p99_ms >= last.p95_ms >= last.p50_ms
            assert last.throughput_per_s > 0
            assert isinstance(last.queue_depth, int) and last.queue_depth == 0
            assert isinstance(last.in_flight, int) and last.in_flight == 0
            assert set(STAGES) <= set(last.stage_ms)
            assert rig.engine.snapshot().completed == last.completed

    asyncio.run(scenario())


# -- interactive acknowledgement ----------------------------------------------------------------


def test_interactive_request_is_written_queued_before_its_result(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    async def scenario() -> None:
        async with running_engine(tmp_path, registry, delay_s=0.5) as rig:
            origin = Origin(rig.run, ListSink(), "form", client_id="gui")
            task = asyncio.create_task(
                rig.engine.predict(
                    iris_request("gui", request_id="ack-1"), origin, acknowledge=True
                )
            )
            seen: list[str] = []
            deadline = time.monotonic() + 10
            while not task.done() and time.monotonic() < deadline:
                row = await asyncio.to_thread(one_row, rig.path, "ack-1")
                if row is not None:
                    seen.append(row["status"])
                    if row["status"] == "queued":
                        assert row["latency_us"] is None and row["output"] is None
                        assert row["run_id"] == rig.run.run_id
                        break
                await asyncio.sleep(0.01)
            assert seen and seen[0] == "queued", seen
            assert not task.done()  # seen as queued while inference was still running

            work = await asyncio.wait_for(task, 10)
            assert work.status == "ok"
            row = one_row(rig.path, "ack-1")
            assert row is not None and row["status"] == "ok"
            assert row["latency_us"] >= 500_000  # the slow model's time is in the latency
            with closing(sqlite3.connect(rig.path)) as conn:
                count = conn.execute(
                    "SELECT count(*) FROM requests WHERE request_id = 'ack-1'"
                ).fetchone()[0]
            assert count == 1  # the result replaced the queued row

    asyncio.run(scenario())


def test_stop_and_close_commit_and_deliver_everything_admitted(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    config = EngineConfig(max_batch=8, max_inflight_batches=1)
    sink = ListSink()
    works: list[Work] = []

    async def scenario() -> None:
        async with running_engine(tmp_path, registry, config, delay_s=0.005) as rig:
            origin = Origin(rig.run, sink, "file", client_id="cli")
            works.extend(await submit_rows(rig.engine, origin, 100))
            await rig.engine.stop()
            with pytest.raises(QueueClosedError):
                await rig.engine.submit(works[0])
        # (Only after the database is closed: see the writer flush test below.)
        assert len(sink.done) == 100

    asyncio.run(scenario())
    rows = rows_by_id(tmp_path / "e.db", [w.request_id for w in works])
    assert [rows[w.request_id]["status"] for w in works] == ["ok"] * 100


def test_writer_flush_waits_for_a_commit_in_progress(tmp_path: Path) -> None:
    insert = "INSERT INTO requests (request_id, source, status, created_us) VALUES (?, 't', ?, ?)"

    async def scenario() -> None:
        db = await storage.open_database(tmp_path / "f.db")
        try:
            committed: list[BaseException | None] = []
            db.writer.add(insert, [("a", "ok", 1)], committed.append)
            await asyncio.sleep(0)  # the writer takes the row and starts its transaction
            await db.writer.flush()
            assert committed == [None]
        finally:
            await db.close()

    asyncio.run(scenario())


def test_a_network_batch_is_admitted_whole_or_refused_whole(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    """Room for 3 when a batch of 6 arrives: no row runs, all six are `overloaded`; with room,
    all six run. Admitted row by row, three would run under the caller's 503."""
    config = EngineConfig(max_batch=1, max_inflight_batches=1, queue_capacity=10)

    async def scenario() -> None:
        async with running_engine(tmp_path, registry, config, delay_s=1.0) as rig:
            eng = rig.engine
            sink = ListSink()
            origin = Origin(rig.run, sink, "http", client_id="api")
            # One batch at a time, each 1 s in the model: of these 8, at most one leaves the
            # queue before the batch below arrives, so the queue has room for 3 or fewer.
            fillers = await submit_rows(eng, origin, 8)
            assert len(eng.queue) >= 7

            def bodies(tag: str) -> list[bytes]:
                return [
                    iris_request(request_id=f"{tag}-{i}").model_dump_json().encode()
                    for i in range(6)
                ]

            refused = await eng.predict_json_batch(
                bodies("full"), origin, request_ids=[None] * 6, own_ids=[None] * 6
            )
            assert [w.error.code if w.error else w.status for w in refused] == ["overloaded"] * 6

            rig.executor.delay_s = 0.0
            await sink.wait_for(8, limit_s=30)
            ran = await eng.predict_json_batch(
                bodies("room"), origin, request_ids=[None] * 6, own_ids=[None] * 6
            )
            assert [w.status for w in ran] == ["ok"] * 6
            assert all(w.status == "ok" for w in fillers)
            await rig.db.writer.flush()
            stored = rows_by_id(rig.path, [f"full-{i}" for i in range(6)])
            assert {row["status"] for row in stored.values()} == {"rejected"}  # kept, not run

    asyncio.run(scenario())
