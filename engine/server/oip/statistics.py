"""OIP's statistics extension (`GET /v2/models/stats`, `/v2/models/{m}/stats`), in the shape
Triton's clients and perf_analyzer read, filled from the engine's own spans.

`ModelStatistics.record` listens to every group of requests the engine finishes (all routes
alike: `/predict`, OIP, the rows of a batch). An engine request is one row, so counts are of
rows; a group that went through the model is one execution of one batch. The stages map to
Triton's names as follows:

- `queue`: the row's `queue_wait` span (accepted into the queue to taken by a batch);
- `compute_input`: `validate` and `metadata` (the body checked and turned into features);
- `compute_infer`: `inference` (the batch's forward pass in the executor);
- `compute_output`: `write` (the result committed to the database, before the answer goes);
- `success` / `fail`: the whole request, accepted to committed, by how it ended.

The figures live in a `StatisticsTable`: one block of counters per worker. With `serve
--workers N` the parent makes the table in shared memory before it forks, each worker adds to
its own block only (no locks: one writer per block), and a read sums every block, so any worker
answers for the whole service. A worker that replaces a dead one takes over its block, so no
count ever goes back.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.work import Work

_INPUT_SPANS = frozenset({"validate", "metadata"})
_INFER = frozenset({"inference"})
_QUEUE = frozenset({"queue_wait"})
_WRITE = frozenset({"write"})

# One model's counters in a block, as columns: (count, ns) per stage, then the totals, then
# (count, ns) of compute input, infer and output for each batch size 1..max_batch.
STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
_SUCCESS, _FAIL, _QUEUE_AT, _INPUT_AT, _INFER_AT, _OUTPUT_AT = (2 * i for i in range(6))
_INFERENCES = 2 * len(STAGES)
_EXECUTIONS = _INFERENCES + 1
_LAST_MS = _INFERENCES + 2
_BATCHES = _INFERENCES + 3
_PER_BATCH = 6


def _span_us(work: Work, names: frozenset[str]) -> int:
    return sum(int(span[2]) for span in work.spans if span[0] in names)


class StatisticsTable:
    """Every worker's counters: int64 cells shaped `[workers, models, columns]`, in memory
    shared across `fork` when there is more than one worker. `slot` is the block this process
    writes (the supervisor gives each worker its own with `claim`)."""

    def __init__(self, models: Sequence[str], max_batch: int, workers: int = 1) -> None:
        self.models = {name: index for index, name in enumerate(models)}
        self.max_batch = max_batch
        shape = (workers, len(self.models), _BATCHES + _PER_BATCH * max_batch)
        cells = int(np.prod(shape))
        if workers > 1:
            # Anonymous and MAP_SHARED: the forked workers write into these very pages.
            self._shared: mmap.mmap | None = mmap.mmap(-1, max(cells, 1) * 8)
            self.cells = np.frombuffer(self._shared, np.int64, count=cells).reshape(shape)
        else:
            self._shared = None
            self.cells = np.zeros(shape, np.int64)
        self.slot = 0

    def claim(self, slot: int) -> None:
        """Write into block `slot` from now on (called in a worker just after the fork)."""
        if not 0 <= slot < self.cells.shape[0]:
            raise ValueError(f"slot {slot} of a table for {self.cells.shape[0]} workers")
        self.slot = slot


class ModelStatistics:
    """Per-model counters of finished requests; `serve`'s lifespan subscribes `record` to the
    engine (`Engine.on_finished`) and the OIP routes read `model_json`."""

    def __init__(
        self, models: Sequence[str], max_batch: int = 256, table: StatisticsTable | None = None
    ) -> None:
        """`table`: the service's shared table (`serve --workers N`); a table of this process
        alone otherwise. Only the models served are counted: a rejected request may name any
        model, and each name kept would be memory a caller could grow at will."""
        self.table = table or StatisticsTable(models, max_batch)
        known = self.table.models
        self._index: dict[str | None, int] = {m: known[m] for m in models if m in known}

    def record(self, group: list[Work]) -> None:
        """A group the engine finished: one batch's rows, or rejections."""
        own = self.table.cells[self.table.slot]
        # Rows the model ran (a rejection written again under a new ID keeps its spans).
        executed = [
            w for w in group if w.status != "rejected" and any(s[0] == "inference" for s in w.spans)
        ]
        for work in group:
            index = self._index.get(work.model_name)
            if index is None:
                continue
            row = own[index]
            total_ns = work.latency_us * 1000
            if work.status != "ok":
                row[_FAIL] += 1
                row[_FAIL + 1] += total_ns
                continue
            for at, names in (
                (_QUEUE_AT, _QUEUE),
                (_INPUT_AT, _INPUT_SPANS),
                (_INFER_AT, _INFER),
                (_OUTPUT_AT, _WRITE),
            ):
                row[at] += 1
                row[at + 1] += _span_us(work, names) * 1000
            row[_SUCCESS] += 1
            row[_SUCCESS + 1] += total_ns
            row[_INFERENCES] += 1
            row[_LAST_MS] = time.time_ns() // 1_000_000
        index = self._index.get(executed[0].model_name) if executed else None
        if index is None or len(executed) > self.table.max_batch:
            return
        # One `Committer.write` per batch the model ran: one execution of len(executed) rows.
        row = own[index]
        row[_EXECUTIONS] += 1
        at = _BATCHES + _PER_BATCH * (len(executed) - 1)
        row[at : at + _PER_BATCH : 2] += 1
        row[at + 1] += sum(_span_us(w, _INPUT_SPANS) for w in executed) * 1000
        row[at + 3] += _span_us(executed[0], _INFER) * 1000
        row[at + 5] += max(_span_us(w, _WRITE) for w in executed) * 1000

    def model_json(self, name: str, version: str) -> dict[str, Any]:
        """One model's entry of `model_stats`, as Triton writes it: every worker's blocks."""
        index = self._index.get(name)
        if index is None:
            row = np.zeros(self.table.cells.shape[2], np.int64)
            last_ms = 0
        else:
            blocks = self.table.cells[:, index]
            row, last_ms = blocks.sum(axis=0), int(blocks[:, _LAST_MS].max())

        def duration(at: int) -> dict[str, int]:
            return {"count": int(row[at]), "ns": int(row[at + 1])}

        inference = {stage: duration(2 * i) for i, stage in enumerate(STAGES)}
        inference["cache_hit"] = inference["cache_miss"] = {"count": 0, "ns": 0}
        batches = row[_BATCHES:].reshape(-1, _PER_BATCH)
        return {
            "name": name,
            "version": version,
            "last_inference": last_ms,
            "inference_count": int(row[_INFERENCES]),
            "execution_count": int(row[_EXECUTIONS]),
            "inference_stats": inference,
            "batch_stats": [
                {
                    "batch_size": size + 1,
                    "compute_input": {"count": int(cells[0]), "ns": int(cells[1])},
                    "compute_infer": {"count": int(cells[2]), "ns": int(cells[3])},
                    "compute_output": {"count": int(cells[4]), "ns": int(cells[5])},
                }
                for size, cells in enumerate(batches)
                if cells[0]
            ],
            "memory_usage": [],
        }
