"""Micro-batching and inference: requests leave the admission queue in batches, each model's rows
run together in the executor, and the results go on to the committer.

The event loop only coordinates: torch runs in the injected `Executor`. With `max_wait_ms` 0 a
batch is dispatched at once and the next one forms while the executor is busy (adaptive
batching); two batches in flight keep the executor fed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.acceptance import us
from engine.admission import AdmissionQueue
from engine.commit import Committer
from engine.tasks import TaskOwner
from engine.validation import error
from engine.work import Work
from storage.writer import GroupCommitWriter

if TYPE_CHECKING:
    from engine.models.runtime import LoadedModel
    from engine.pipeline import EngineConfig

log = logging.getLogger(__name__)


class Batcher:
    """Takes batches off the admission queue and runs them in the executor, at most
    `max_inflight_batches` at once; the Engine starts it (`run`) and drains it (`drain`)."""

    def __init__(
        self,
        queue: AdmissionQueue[Work],
        executor: Executor,
        writer: GroupCommitWriter,
        commit: Committer,
        config: EngineConfig,
    ) -> None:
        self._queue, self._executor, self._config = queue, executor, config
        # Where results go (`commit`), and whose backlog holds the next batch back (`writer`).
        self._commit, self._writer = commit, writer
        self._slots = asyncio.Semaphore(config.max_inflight_batches)
        self._batch_tasks = TaskOwner()
        # Requests taken off the queue so far; those the committer has finished are no longer
        # in flight.
        self.taken = 0

    async def run(self) -> None:
        """Form and dispatch batches until the queue is closed and drained."""
        config = self._config
        wait_s = config.max_wait_ms / 1000
        writer = self._writer
        while True:
            await self._slots.acquire()
            # Results waiting for the writer beyond this hold back the batcher (and the queue).
            await writer.wait_below(config.max_pending_writes)
            batch = await self._queue.take(config.max_batch, wait_s)
            if not batch:
                self._slots.release()
                return
            self.taken += len(batch)
            self._batch_tasks.spawn(self._run_batch(batch), "batch")

    async def drain(self) -> None:
        """Wait for the batches dispatched so far to reach the writer."""
        await self._batch_tasks.wait()

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
            # Labelling the scores happens in the executor too: it is per-row Python work, and
            # the loop it would run on is the desktop app's GUI thread.
            outputs = await loop.run_in_executor(self._executor, _predict_outputs, model, rows)
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
                ("queue_wait", us(work.enqueued_ns - t0), us(taken - work.enqueued_ns))
            )
            work.spans.append(("inference", us(taken - t0), us(done - taken), infer_attrs))
            if outputs is not None:
                work.status, work.output = "ok", outputs[i]
            work.ready_ns = done
        self._commit.write(group)


def _predict_outputs(model: LoadedModel, rows: list[Any]) -> list[dict[str, Any]]:
    out = model.predict_batch(rows)
    if model.manifest.is_classifier:
        return _outputs(out, model.labels)
    return _values(out, model.output_names)


def _check(out: np.ndarray, names: list[str], what: str) -> None:
    if out.ndim != 2 or out.shape[1] != len(names):
        raise ValueError(f"model returned shape {list(out.shape)} for {len(names)} {what}")
    if not np.isfinite(out).all():  # JSON has no NaN; a stored answer must be a number
        raise ValueError("model returned a value that is not a finite number")


def _outputs(probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """Label and per-class scores for each row of class probabilities."""
    _check(probs, labels, "labels")
    scores = probs.astype(np.float64).round(4).tolist()
    best = probs.argmax(axis=1).tolist()
    return [
        {"label": labels[b], "scores": dict(zip(labels, s, strict=True))}
        for b, s in zip(best, scores, strict=True)
    ]


def _values(out: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """A regressor's named numbers for each row; float32's own precision, not 4 places."""
    _check(out, names, "outputs")
    rows = out.astype(np.float64).tolist()
    return [
        {"values": {name: float(f"{v:.7g}") for name, v in zip(names, row, strict=True)}}
        for row in rows
    ]
