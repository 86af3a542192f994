"""The local request path: accept -> validate -> metadata -> admit -> micro-batch -> infer ->
fan out -> group-commit write -> deliver.

`Engine` is the front every caller uses (the commands, the service, the app, file jobs): it
accepts and admits requests here; the batching and inference live in `engine.batching`, the
write and fan-out in `engine.commit`, what acceptance makes of a row in `engine.acceptance`.

The event loop coordinates and waits; torch runs only in the injected `Executor`. A sink hears
of a request only after the transaction holding its row has ended: committed, or failed, in
which case the request arrives as `failed` with `stored=False` and must not be shown as a result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from engine.acceptance import (
    CallerIds,
    accepted_work,
    duplicate,
    is_overloaded,
    overloaded,
    rejected_work,
)
from engine.admission import AdmissionQueue, QueueClosedError, QueueFullError
from engine.batching import Batcher
from engine.commit import Committer, request_row
from engine.contracts import ErrorBody, PredictRequest
from engine.ids import new_id
from engine.job_records import JobRecords
from engine.models.registry import ModelRegistry
from engine.models.runtime import set_torch_threads
from engine.stats import LiveStats, StatsSnapshot
from engine.storage_check import StorageCheck
from engine.tasks import TaskOwner
from engine.tiers import ClientDirectory
from engine.validation import RowValidator, Validated
from engine.work import FutureSink, Origin, Work
from storage import queries
from storage.database import Database

__all__ = ["Engine", "EngineConfig", "Origin"]


@dataclass(frozen=True)
class EngineConfig:
    """The engine's batching, queue and publishing limits; chosen by `engine.startup` callers."""

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


class Engine:
    """The local request path's front: owns the queue, the caller-ID reservations, the batcher,
    the committer and the live stats; the commands, the service, the app and file jobs call it."""

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
        # The `file_jobs` rows file jobs keep (part of `FileJob`'s interface to the engine).
        self.job_records = JobRecords(db)
        self._tasks = TaskOwner()
        self._subscribers: list[Callable[[StatsSnapshot], None]] = []
        self._caller_ids = CallerIds()
        self._commit = Committer(db.writer, self.stats, self._caller_ids)
        self._batcher = Batcher(self.queue, executor, db.writer, self._commit, self.config)
        self._storage = StorageCheck(db.writer)
        self._running = False
        self._requests_only = RowValidator(registry, None, requests_only=True)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load and warm every model in the executor, then start the batcher."""
        loop = asyncio.get_running_loop()
        # In the executor: the first use of torch imports it (seconds), and on the app's GUI
        # thread that was a frozen window (a 1.9 s stall at launch).
        await loop.run_in_executor(self.executor, self._load_models)
        self._running = True
        self._tasks.spawn(self._batcher.run(), "batcher")
        self._tasks.spawn(self._publish_loop(), "stats-publisher")

    def _load_models(self) -> None:
        if self.config.torch_threads is not None:
            set_torch_threads(self.config.torch_threads)
        self.registry.load_all()

    async def replace_models(self, registry: ModelRegistry) -> None:
        """Swap in another set of models (a models folder changed) without stopping.

        `registry`'s models load and warm in the executor first, so the loop never runs torch
        and no request meets a half-loaded model; a model that fails moves to its `problems`.
        Then the registry and the validators built from it are swapped at once, between two
        requests on the loop: a request accepted before keeps its own model object (its
        `Work.model`) to the end, one accepted after sees only the new set."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, registry.load_all)
        self.registry = registry
        self._requests_only = RowValidator(registry, None, requests_only=True)

    async def stop(self) -> None:
        """Drain: finish what was admitted, wait for its commits, then stop the tasks."""
        self.queue.close()
        self._running = False
        await self._tasks.wait()
        await self._batcher.drain()
        await self.db.writer.flush()

    def subscribe(self, callback: Callable[[StatsSnapshot], None]) -> None:
        self._subscribers.append(callback)

    def on_finished(self, callback: Callable[[list[Work]], None]) -> None:
        """`callback` hears every group of requests after its transaction ends (live views)."""
        self._commit.finished_listeners.append(callback)

    @property
    def in_flight(self) -> int:
        """Requests taken by the batcher whose rows have not been committed yet."""
        return self._batcher.taken - self._commit.finished

    def snapshot(self) -> StatsSnapshot:
        return self.stats.snapshot(len(self.queue), self.in_flight)

    async def storage_problem(self) -> str | None:
        """Why a request could not be stored now, or None when it could (readiness)."""
        return await self._storage.problem()

    async def _publish_loop(self) -> None:
        period = 1.0 / self.config.publish_hz
        while self._running:
            await asyncio.sleep(period)
            if self._subscribers:
                snap = self.snapshot()
                for callback in self._subscribers:
                    callback(snap)

    # -- acceptance ----------------------------------------------------------------------------

    def validator(self, default_model: str | None) -> RowValidator:
        return RowValidator(self.registry, self.registry.get(default_model or ""))

    def requests_validator(self) -> RowValidator:
        """The validator of network callers' requests (`predict_json` and its batch form)."""
        return self._requests_only

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
        checked: Validated | ErrorBody | None = None,
    ) -> Work:
        """Validate one row and look up its client. Returns `Work` that is either ready to
        submit (`status == "queued"`) or already rejected (hand it to `record_rejection`).
        `checked` is `validator`'s verdict on `data` when the caller already has it."""
        t0 = time.perf_counter_ns() if accepted_ns is None else accepted_ns
        origin.run.accepted += 1
        if checked is None:
            checked = validator.validate(data)
        t1 = time.perf_counter_ns()
        if not isinstance(checked, Validated):
            # Under the caller's ID unless a request in flight here holds it. A stored request
            # holding it makes the database decline the row, and the committer stores it under
            # an ID of its own then: no read here, and no window between a read and the write.
            rejected_id = request_id or own_id
            if request_id is not None and request_id in self._caller_ids:
                rejected_id = None
            named = validator.named_model(data)
            return rejected_work(
                origin, checked, t0, source_row, data, input_text, rejected_id, named
            )
        # The body's ID wins; `request_id` is one the caller gave outside it (X-Request-ID).
        # `own_id` was made here (a UUIDv7): unique by construction, so it skips the check
        # (a database read per request).
        wanted = checked.request_id or request_id
        if wanted is None:
            return await accepted_work(
                self.clients, checked, own_id or new_id(), origin, t0, t1, source_row
            )
        # Reserved before the first await: of two requests with one ID, exactly one passes here.
        # Another process (`serve --workers N`) cannot see this set; the database's unique
        # key decides between processes (`queries.UPSERT_REQUEST`, then the committer).
        if wanted in self._caller_ids:
            return rejected_work(
                origin,
                duplicate(wanted),
                t0,
                source_row,
                data,
                input_text,
                None,
                checked.model.name,
            )
        token = object()
        self._caller_ids[wanted] = token
        try:
            held = self.db.request_id_held_now(wanted)
            if held is None:  # the file was locked for a moment: ask the reader, which waits
                held = await queries.request_id_held(self.db.reader, wanted)
            work = (
                None
                if held
                else await accepted_work(self.clients, checked, wanted, origin, t0, t1, source_row)
            )
        except BaseException:
            # Never leave an ID reserved by a request that died.
            self._caller_ids.release(wanted, token)
            raise
        if work is None:
            self._caller_ids.release(wanted, token)
            return rejected_work(
                origin,
                duplicate(wanted),
                t0,
                source_row,
                data,
                input_text,
                None,
                checked.model.name,
            )
        self._caller_ids[wanted] = work
        return work

    def reject(
        self, origin: Origin, body: ErrorBody, *, source_row: int | None, input_text: str | None
    ) -> None:
        """Record a row that failed before validation (unreadable line, bad image)."""
        origin.run.accepted += 1
        t0 = time.perf_counter_ns()
        self.record_rejection(rejected_work(origin, body, t0, source_row, None, input_text))

    def record_rejection(self, work: Work) -> None:
        """Rejections are stored too (cheaply, through the same group commit)."""
        work.ready_ns = time.perf_counter_ns()
        self._commit.write([work])

    # -- submission ----------------------------------------------------------------------------

    async def submit(self, work: Work) -> None:
        """Admit accepted work, waiting while the queue is full (backpressure)."""
        work.enqueued_ns = time.perf_counter_ns()
        try:
            await self.queue.put(work, work.priority)
        except BaseException:  # cancelled while waiting, or the engine stopping
            self._caller_ids.release(work.request_id, work)  # never admitted: its ID is free again
            raise

    def submit_nowait(self, work: Work) -> None:
        """Admit or raise `QueueFullError` at once (callers answer "overloaded")."""
        work.enqueued_ns = time.perf_counter_ns()
        try:
            self.queue.put_nowait(work, work.priority)
        except (QueueFullError, QueueClosedError):
            self._caller_ids.release(work.request_id, work)  # refused: its ID is free again
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
                self._caller_ids.release(work.request_id, work)  # refused: its ID is free again
            raise

    def acknowledge(self, work: Work) -> None:
        """Write the request as `queued` before its result (it is committed ahead of the
        result row: one writer, in order), so a crash leaves a visible, re-runnable row."""
        self.db.writer.add(
            queries.UPSERT_REQUEST, [request_row(work, work.accepted_ns, queued=True)]
        )

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
                overloaded(work)
        if work.status == "rejected":
            self.record_rejection(work)
            if is_overloaded(work):
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
        checked: Sequence[Validated | ErrorBody] | None = None,
    ) -> list[Work]:
        """The rows of one network batch (an OIP infer), as `predict_json` takes one.
        `checked`: each body's verdict from `requests_validator()`, when the caller already
        checked them (the bodies are still needed: a rejection stores its text).

        The rows that pass acceptance are admitted together or not at all: admitted one by
        one, a queue that filled while the rows were being accepted would run part of a batch
        whose caller is told 503 and retries it."""
        sink = FutureSink()
        own = Origin(origin.run, sink, origin.source, origin.client_id, origin.target)
        verdicts: Sequence[Validated | ErrorBody | None] = checked or [None] * len(bodies)
        accepted = await asyncio.gather(
            *(
                self.accept(
                    body, self._requests_only, own, request_id=rid, own_id=oid, checked=check
                )
                for body, rid, oid, check in zip(
                    bodies, request_ids, own_ids, verdicts, strict=True
                )
            ),
            return_exceptions=True,
        )
        works = [w for w in accepted if isinstance(w, Work)]
        runnable = [w for w in works if w.status != "rejected"]
        failure = next((e for e in accepted if isinstance(e, BaseException)), None)
        if failure is not None:
            for work in runnable:  # nothing of a batch that failed is admitted
                self._caller_ids.release(work.request_id, work)
            raise failure
        futures = [sink.expect(work) for work in works]
        try:
            self.submit_all_nowait(runnable)
        except (QueueFullError, QueueClosedError):
            for work in runnable:
                overloaded(work)
        for work in works:
            if work.status == "rejected":
                self.record_rejection(work)
        # Refusals are answered now (their rows go in with the next commit), results once
        # committed.
        return [w if is_overloaded(w) else await f for w, f in zip(works, futures, strict=True)]
