"""The local request path: accept -> validate -> metadata -> admit -> micro-batch -> infer ->
fan out -> group-commit write -> deliver.

The event loop coordinates and waits; torch runs only in the injected `Executor`. A sink hears
of a request only after the transaction holding its row has ended: committed, or failed, in
which case the request arrives as `failed` with `stored=False` and must not be shown as a result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.admission import AdmissionQueue, QueueClosedError, QueueFullError
from engine.contracts import ErrorBody, PredictRequest
from engine.ids import new_id
from engine.models.registry import ModelRegistry
from engine.models.runtime import set_torch_threads
from engine.stats import LiveStats, RunRecorder, StatsSnapshot
from engine.tasks import TaskOwner
from engine.tiers import ClientDirectory
from engine.validation import RowValidator, Validated, error
from engine.work import FutureSink, Sink, Work, compact_json
from storage import queries
from storage.database import Database
from storage.writer import RowsRefusedError

log = logging.getLogger(__name__)

# Readiness trusts the last commit this long; past it (an idle service) it writes a probe row.
STORAGE_FRESH_S = 5.0
# A request-sized probe row: the space a request's row takes is what must be available.
_PROBE_INPUT = "x" * 2048


@dataclass(frozen=True)
class EngineConfig:
    max_batch: int = 256
    # 0: dispatch at once and let batches form while the executor is busy (adaptive batching);
    # a positive wait trades latency at low load for fuller batches.
    max_wait_ms: float = 0.0
    queue_capacity: int = 4096
    # Two batches in flight: the next one is formed while the executor runs the current one.
    max_inflight_batches: int = 2
    # Results waiting for the writer beyond this hold back the batcher (and so the queue).
    max_pending_writes: int = 4000
    publish_hz: float = 10.0
    # torch intra-op threads (process-wide); None leaves torch's default.
    torch_threads: int | None = 1


@dataclass(slots=True)
class Origin:
    """Where a group of requests comes from and where their outcomes go."""

    run: RunRecorder
    sink: Sink
    source: str
    client_id: str = "cli"
    target: str = "local"
    job_id: int | None = None


def _us(ns: int) -> int:
    return ns // 1000


class Engine:
    def __init__(
        self,
        db: Database,
        registry: ModelRegistry,
        executor: Executor,
        config: EngineConfig | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.executor = executor
        self.config = config or EngineConfig()
        self.clients = ClientDirectory(db.reader)
        self.queue: AdmissionQueue[Work] = AdmissionQueue(self.config.queue_capacity)
        self.stats = LiveStats()
        self.in_flight = 0
        self._tasks = TaskOwner()
        self._batch_tasks = TaskOwner()
        self._slots = asyncio.Semaphore(self.config.max_inflight_batches)
        self._subscribers: list[Callable[[StatsSnapshot], None]] = []
        # Caller-chosen request IDs in flight here, each with what holds it (a `Work`, or a
        # token while it is being accepted); released when its row's transaction has ended.
        self._caller_ids: dict[str, object] = {}
        self._storage_check: asyncio.Future[str | None] | None = None
        self._finished_listeners: list[Callable[[list[Work]], None]] = []
        self._running = False
        self._requests_only = RowValidator(registry, None, requests_only=True)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and warm every model in the executor, then start the batcher."""
        loop = asyncio.get_running_loop()
        if self.config.torch_threads is not None:
            set_torch_threads(self.config.torch_threads)
        await loop.run_in_executor(self.executor, self.registry.load_all)
        self._running = True
        self._tasks.spawn(self._batch_loop(), "batcher")
        self._tasks.spawn(self._publish_loop(), "stats-publisher")

    async def stop(self) -> None:
        """Drain: finish what was admitted, wait for its commits, then stop the tasks."""
        self.queue.close()
        self._running = False
        await self._tasks.wait()
        await self._batch_tasks.wait()
        await self.db.writer.flush()

    def subscribe(self, callback: Callable[[StatsSnapshot], None]) -> None:
        self._subscribers.append(callback)

    def on_finished(self, callback: Callable[[list[Work]], None]) -> None:
        """`callback` hears every group of requests after its transaction ends (live views)."""
        self._finished_listeners.append(callback)

    def snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot(len(self.queue), self.in_flight)

    # -- acceptance ----------------------------------------------------------------------------

    def validator(self, default_model: str | None) -> RowValidator:
        return RowValidator(self.registry, self.registry.get(default_model or ""))

    async def accept(
        self,
        data: bytes | dict[str, Any],
        validator: RowValidator,
        origin: Origin,
        *,
        source_row: int | None = None,
        accepted_ns: int | None = None,
        input_text: str | None = None,
        request_id: str | None = None,
        own_id: str | None = None,
    ) -> Work:
        """Validate one row and look up its client. Returns `Work` that is either ready to
        submit (`status == "queued"`) or already rejected (hand it to `record_rejection`)."""
        t0 = time.perf_counter_ns() if accepted_ns is None else accepted_ns
        origin.run.accepted += 1
        checked = validator.validate(data)
        t1 = time.perf_counter_ns()
        if not isinstance(checked, Validated):
            # Under the caller's ID unless a request in flight here holds it. A stored request
            # holding it makes the database decline the row, and `_deliver` stores it under an
            # ID of its own then: no read here, and no window between a read and the write.
            rejected_id = request_id or own_id
            if request_id is not None and request_id in self._caller_ids:
                rejected_id = None
            return self._rejected(origin, checked, t0, source_row, data, input_text, rejected_id)
        # The body's ID wins; `request_id` is one the caller gave outside it (X-Request-ID).
        # `own_id` was made here (a UUIDv7): unique by construction, so it skips the check
        # (a database read per request).
        wanted = checked.request_id or request_id
        if wanted is None:
            return await self._accepted(checked, own_id or new_id(), origin, t0, t1, source_row)
        # Reserved before the first await: of two requests with one ID, exactly one passes here.
        # Another process (`serve --workers N`) cannot see this set; the database's unique
        # key decides between processes (`queries.UPSERT_REQUEST`, then `_deliver`).
        if wanted in self._caller_ids:
            return self._rejected(origin, _duplicate(wanted), t0, source_row, data, input_text)
        token = object()
        self._caller_ids[wanted] = token
        try:
            held = await queries.request_id_held(self.db.reader, wanted)
            work = (
                None if held else await self._accepted(checked, wanted, origin, t0, t1, source_row)
            )
        except BaseException:
            self._release(wanted, token)  # never leave an ID reserved by a request that died
            raise
        if work is None:
            self._release(wanted, token)
            return self._rejected(origin, _duplicate(wanted), t0, source_row, data, input_text)
        self._caller_ids[wanted] = work
        return work

    async def _accepted(
        self,
        checked: Validated,
        request_id: str,
        origin: Origin,
        t0: int,
        t1: int,
        source_row: int | None,
    ) -> Work:
        """`Work` for a validated request: its client looked up, its features made."""
        client_id = checked.client_id or origin.client_id
        client = self.clients.peek(client_id) or await self.clients.lookup(client_id)
        t2 = time.perf_counter_ns()
        spans: list[tuple[Any, ...]] = [
            ("validate", 0, _us(t1 - t0)),
            ("metadata", _us(t1 - t0), _us(t2 - t1)),
        ]
        model = checked.model
        work = Work(
            request_id=request_id,
            run=origin.run,
            sink=origin.sink,
            source=origin.source,
            client_id=client_id,
            model=model,
            features=model.features(checked.inputs),
            priority=client.priority,
            input_json=checked.inputs.model_dump_json(),
            accepted_ns=t0,
            created_us=time.time_ns() // 1000,
            spans=spans,
            target=origin.target,
            job_id=origin.job_id,
            source_row=source_row,
            metadata_json=compact_json(checked.metadata) if checked.metadata else None,
        )
        if not client.enabled:
            work.status = "rejected"
            work.error = error("client_disabled", f"client {client_id!r} is disabled", "client_id")
        return work

    def _release(self, request_id: str, holder: object) -> None:
        """Free a caller's ID reserved by `holder` (and by nothing that took it since)."""
        if self._caller_ids.get(request_id) is holder:
            del self._caller_ids[request_id]

    def _rejected(
        self,
        origin: Origin,
        body: ErrorBody,
        t0: int,
        source_row: int | None,
        data: bytes | dict[str, Any] | None,
        input_text: str | None,
        request_id: str | None = None,
    ) -> Work:
        if input_text is None and data is not None:
            # json, not orjson: a rejected NaN or Infinity must stay visible, not become null.
            raw = data if isinstance(data, bytes) else json.dumps(data, default=str).encode()
            input_text = raw[:2048].decode("utf-8", "replace")
        work = Work(
            request_id=request_id or new_id(),
            run=origin.run,
            sink=origin.sink,
            source=origin.source,
            client_id=origin.client_id,
            model=None,
            features=None,
            priority=0,
            input_json=input_text,
            accepted_ns=t0,
            created_us=time.time_ns() // 1000,
            spans=[("validate", 0, _us(time.perf_counter_ns() - t0))],
            target=origin.target,
            job_id=origin.job_id,
            source_row=source_row,
            status="rejected",
            error=body,
        )
        body.request_id = work.request_id
        return work

    def reject(
        self, origin: Origin, body: ErrorBody, *, source_row: int | None, input_text: str | None
    ) -> None:
        """Record a row that failed before validation (unreadable line, bad image)."""
        origin.run.accepted += 1
        t0 = time.perf_counter_ns()
        self.record_rejection(self._rejected(origin, body, t0, source_row, None, input_text))

    def record_rejection(self, work: Work) -> None:
        """Rejections are stored too (cheaply, through the same group commit)."""
        work.ready_ns = time.perf_counter_ns()
        self._write([work])

    # -- submission ----------------------------------------------------------------------------

    async def submit(self, work: Work) -> None:
        """Admit accepted work, waiting while the queue is full (backpressure)."""
        work.enqueued_ns = time.perf_counter_ns()
        try:
            await self.queue.put(work, work.priority)
        except BaseException:  # cancelled while waiting, or the engine stopping
            self._release(work.request_id, work)  # never admitted: its ID is free again
            raise

    def submit_nowait(self, work: Work) -> None:
        """Admit or raise `QueueFullError` at once (callers answer "overloaded")."""
        work.enqueued_ns = time.perf_counter_ns()
        try:
            self.queue.put_nowait(work, work.priority)
        except (QueueFullError, QueueClosedError):
            self._release(work.request_id, work)  # refused: its ID is free again
            raise

    def submit_all_nowait(self, works: Sequence[Work]) -> None:
        """Admit every request at once or raise `QueueFullError` with none admitted."""
        now = time.perf_counter_ns()
        for work in works:
            work.enqueued_ns = now
        try:
            self.queue.put_all_nowait([(work, work.priority) for work in works])
        except (QueueFullError, QueueClosedError):
            for work in works:
                self._release(work.request_id, work)  # refused: its ID is free again
            raise

    def acknowledge(self, work: Work) -> None:
        """Write the request as `queued` before its result (it is committed ahead of the
        result row: one writer, in order), so a crash leaves a visible, re-runnable row."""
        self.db.writer.add(queries.UPSERT_REQUEST, [_row(work, work.accepted_ns, queued=True)])

    async def predict(
        self,
        request: PredictRequest,
        origin: Origin,
        *,
        accepted_ns: int | None = None,
        acknowledge: bool = False,
    ) -> Work:
        """One request end to end; returns it once committed.

        `acknowledge=True` is for callers shown the request before its result (the desktop
        form): its row is written as `queued` first. A caller that waits for the result in one
        exchange (an HTTP /predict) needs no such row: nothing was promised before the commit.
        """
        sink = FutureSink()
        own = Origin(origin.run, sink, origin.source, request.client_id, origin.target)
        # Python mode, not JSON mode: a NaN in the payload must reach validation as NaN.
        work = await self.accept(
            request.model_dump(exclude_none=True),
            self.validator(request.model),
            own,
            accepted_ns=accepted_ns,
            request_id=request.request_id,
        )
        future = sink.expect(work)
        if work.status == "rejected":
            self.record_rejection(work)
        else:
            if acknowledge:
                self.acknowledge(work)
            await self.submit(work)
        return await future

    async def predict_json(
        self,
        body: bytes,
        origin: Origin,
        *,
        request_id: str | None = None,
        own_id: str | None = None,
    ) -> Work:
        """A network caller's request, as the JSON text it sent; returns it once committed.

        Never waits for queue space: a full queue makes the request a stored rejection with the
        code `overloaded` (the HTTP service answers 503). `request_id` is the caller's ID from
        outside the body, `own_id` one the server made for it; the body's own `request_id`
        wins."""
        sink = FutureSink()
        own = Origin(origin.run, sink, origin.source, origin.client_id, origin.target)
        work = await self.accept(
            body, self._requests_only, own, request_id=request_id, own_id=own_id
        )
        future = sink.expect(work)
        if work.status != "rejected":
            try:
                self.submit_nowait(work)
            except (QueueFullError, QueueClosedError):
                _overloaded(work)
        if work.status == "rejected":
            self.record_rejection(work)
            if _is_overloaded(work):
                # A refusal, not a result: the caller hears it now, and its row goes in with
                # the next group commit. Waiting for that commit made every 503 as slow as
                # the writer under the very load it refuses.
                return work
        return await future

    async def predict_json_batch(
        self,
        bodies: Sequence[bytes],
        origin: Origin,
        *,
        request_ids: Sequence[str | None],
        own_ids: Sequence[str | None],
    ) -> list[Work]:
        """The rows of one network batch (an OIP infer), as `predict_json` takes one.

        The rows that pass acceptance are admitted together or not at all: admitted one by
        one, a queue that filled while the rows were being accepted would run part of a batch
        whose caller is told 503 and retries it."""
        sink = FutureSink()
        own = Origin(origin.run, sink, origin.source, origin.client_id, origin.target)
        accepted = await asyncio.gather(
            *(
                self.accept(body, self._requests_only, own, request_id=rid, own_id=oid)
                for body, rid, oid in zip(bodies, request_ids, own_ids, strict=True)
            ),
            return_exceptions=True,
        )
        works = [w for w in accepted if isinstance(w, Work)]
        runnable = [w for w in works if w.status != "rejected"]
        failure = next((e for e in accepted if isinstance(e, BaseException)), None)
        if failure is not None:
            for work in runnable:  # nothing of a batch that failed is admitted
                self._release(work.request_id, work)
            raise failure
        futures = [sink.expect(work) for work in works]
        try:
            self.submit_all_nowait(runnable)
        except (QueueFullError, QueueClosedError):
            for work in runnable:
                _overloaded(work)
        for work in works:
            if work.status == "rejected":
                self.record_rejection(work)
        # Refusals are answered now (their rows go in with the next commit), results once
        # committed.
        return [w if _is_overloaded(w) else await f for w, f in zip(works, futures, strict=True)]

    # -- batching and inference ----------------------------------------------------------------

    async def _batch_loop(self) -> None:
        wait_s = self.config.max_wait_ms / 1000
        writer = self.db.writer
        while True:
            await self._slots.acquire()
            await writer.wait_below(self.config.max_pending_writes)
            batch = await self.queue.take(self.config.max_batch, wait_s)
            if not batch:
                self._slots.release()
                return
            self.in_flight += len(batch)
            self._batch_tasks.spawn(self._run_batch(batch), "batch")

    async def _run_batch(self, batch: list[Work]) -> None:
        try:
            groups: dict[str, list[Work]] = {}
            for work in batch:
                assert work.model is not None
                groups.setdefault(work.model.name, []).append(work)
            for group in groups.values():
                await self._infer(group)
        finally:
            self._slots.release()

    async def _infer(self, group: list[Work]) -> None:
        model = group[0].model
        assert model is not None
        loop = asyncio.get_running_loop()
        taken = time.perf_counter_ns()
        rows = [w.features for w in group if w.features is not None]
        outputs: list[dict[str, Any]] | None = None
        try:
            probs: np.ndarray = await loop.run_in_executor(self.executor, model.predict_batch, rows)
            outputs = _outputs(probs, model.labels)
        except Exception as exc:  # a model failure fails this batch, not the engine
            log.error("inference failed for model %s: %s", model.name, exc, exc_info=True)
            failure = error("inference_failed", f"inference failed: {type(exc).__name__}: {exc}")
            for work in group:
                work.status, work.error = "failed", failure
        done = time.perf_counter_ns()
        infer_attrs = {"batch_size": len(group)}
        for i, work in enumerate(group):
            t0 = work.accepted_ns
            work.spans.append(
                ("queue_wait", _us(work.enqueued_ns - t0), _us(taken - work.enqueued_ns))
            )
            work.spans.append(("inference", _us(taken - t0), _us(done - taken), infer_attrs))
            if outputs is not None:
                work.status, work.output = "ok", outputs[i]
            work.ready_ns = done
        self._write(group)

    # -- write and fan out -----------------------------------------------------------------------

    def _write(self, group: list[Work]) -> None:
        def build(start_ns: int) -> list[Any]:
            return [_row(work, start_ns) for work in group]

        def committed(failure: BaseException | None) -> None:
            self._deliver(group, failure)

        self.db.writer.add_deferred(
            queries.UPSERT_REQUEST,
            len(group),
            build,
            committed,
            check=queries.requests_not_stored,
        )

    def _deliver(self, group: list[Work], failure: BaseException | None) -> None:
        if isinstance(failure, RowsRefusedError):
            # The rest of the group committed; the declined rows' IDs belong to requests
            # stored by someone else (another worker process, an earlier run).
            refused = [group[i] for i in sorted(failure.rows)]
            self._restore_refused(refused)
            group = [work for i, work in enumerate(group) if i not in failure.rows]
            failure = None
            if not group:
                return
        now = time.perf_counter_ns()
        stats, finished = self.stats, 0
        for work in group:
            if work.status != "rejected":
                finished += 1  # counted in flight from the batcher on
            if failure is not None:
                work.stored = False
                work.status = "failed"
                work.error = error("storage_failed", f"could not store the result: {failure}")
            work.latency_us = _us(now - work.accepted_ns)
            work.spans.append(
                ("write", _us(work.ready_ns - work.accepted_ns), _us(now - work.ready_ns))
            )
            self._release(work.request_id, work)
            work.run.record(work.status, work.latency_us)
            stats.record(work.status, work.latency_us, work.spans)
        self.in_flight -= finished
        for listener in self._finished_listeners:
            listener(group)
        sink = group[0].sink
        if all(work.sink is sink for work in group):
            sink.deliver(group)
            return
        by_sink: dict[int, tuple[Sink, list[Work]]] = {}
        for work in group:
            by_sink.setdefault(id(work.sink), (work.sink, []))[1].append(work)
        for target, works in by_sink.values():
            target.deliver(works)

    def _restore_refused(self, refused: list[Work]) -> None:
        """Store requests whose rows the database declined as rejections under IDs of their own.

        An accepted request lost the race for its ID to a request stored first (in another
        process: this one's reservations rule out a race here): it becomes a
        `duplicate_request_id` rejection, as if the stored one had been seen at acceptance. A
        rejection keeps its reason and only moves to a new ID. Callers hear of them once that
        second write has ended."""
        for work in refused:
            self._release(work.request_id, work)
            if work.status != "rejected":
                self.in_flight -= 1  # it left the batcher's count here, not in `_deliver`
                work.status, work.output = "rejected", None
                work.error = _duplicate(work.request_id)
            work.request_id = new_id()
            assert work.error is not None
            work.error.request_id = work.request_id
        self._write(refused)

    async def storage_problem(self) -> str | None:
        """Why a request could not be stored now, or None when it could: the outcome of the
        last commit while it is recent and a success, else of a probe row written and removed
        in one transaction (so a service that stopped failing, or sat idle, is judged afresh).
        One probe at a time, however many ask."""
        writer = self.db.writer
        recent = time.monotonic() - writer.succeeded_at < STORAGE_FRESH_S
        if writer.failure is None and recent:
            return None
        if self._storage_check is None:
            self._storage_check = asyncio.ensure_future(self._probe_storage())
            self._storage_check.add_done_callback(self._storage_checked)
        return await asyncio.shield(self._storage_check)

    def _storage_checked(self, _done: asyncio.Future[str | None]) -> None:
        self._storage_check = None

    async def _probe_storage(self) -> str | None:
        probe_id = f"probe-{new_id()}"
        try:
            async with asyncio.timeout(5):
                await self.db.writer.try_write(
                    queries.PROBE_REQUEST,
                    (probe_id, _PROBE_INPUT),
                    queries.UNDO_PROBE_REQUEST,
                    (probe_id,),
                )
        except TimeoutError:
            return "the database did not finish a write within 5 s"
        except Exception as exc:  # any failure to write means requests cannot be stored
            return f"the database cannot store requests: {exc}"
        return None

    async def _publish_loop(self) -> None:
        period = 1.0 / self.config.publish_hz
        while self._running:
            await asyncio.sleep(period)
            if self._subscribers:
                snap = self.snapshot()
                for callback in self._subscribers:
                    callback(snap)


def _overloaded(work: Work) -> None:
    """Turn accepted work the queue had no room for into an `overloaded` rejection."""
    work.status = "rejected"
    work.error = error("overloaded", "the server is at capacity; try again shortly")
    work.error.request_id = work.request_id


def _is_overloaded(work: Work) -> bool:
    return work.error is not None and work.error.code == "overloaded"


def _duplicate(request_id: str) -> ErrorBody:
    return error(
        "duplicate_request_id",
        f"request_id {request_id!r} is already used by another request",
        "request_id",
    )


def _outputs(probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """Label and per-class scores for each row of class probabilities."""
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(f"model returned shape {probs.shape} for {len(labels)} labels")
    scores = probs.astype(np.float64).round(4).tolist()
    best = probs.argmax(axis=1).tolist()
    return [
        {"label": labels[b], "scores": dict(zip(labels, s, strict=True))}
        for b, s in zip(best, scores, strict=True)
    ]


def _row(work: Work, start_ns: int, *, queued: bool = False) -> tuple[Any, ...]:
    """The `requests` row for `work`; the stored write span ends as its transaction starts."""
    if queued:
        spans: list[Any] = list(work.spans)
        latency_us = finished_us = None
        status = "queued"
        output = None
    else:
        write_start = _us(work.ready_ns - work.accepted_ns)
        spans = [*work.spans, ("write", write_start, _us(start_ns - work.ready_ns))]
        latency_us = _us(start_ns - work.accepted_ns)
        finished_us = work.created_us + latency_us
        status = work.status
        output = compact_json(work.output) if work.output is not None else None
    return (
        work.request_id,
        work.run.run_id,
        work.job_id,
        work.source_row,
        work.source,
        work.target,
        work.model_name,
        work.client_id,
        status,
        work.created_us,
        finished_us,
        latency_us,
        work.input_json,
        work.metadata_json,
        output,
        work.error.model_dump_json(exclude_none=True) if work.error is not None else None,
        compact_json(spans),
    )
