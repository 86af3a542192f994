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

Each worker process of `serve --workers N` keeps its own figures: a caller sees the worker
that answered.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from engine.work import Work

_INPUT_SPANS = frozenset({"validate", "metadata"})
_INFER = frozenset({"inference"})
_QUEUE = frozenset({"queue_wait"})
_WRITE = frozenset({"write"})


@dataclass(slots=True)
class Duration:
    """A count and a total in nanoseconds (Triton's `StatisticDuration`)."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def as_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class _BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class _ModelStats:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    stages: dict[str, Duration] = field(default_factory=lambda: defaultdict(Duration))
    batches: dict[int, _BatchStats] = field(default_factory=lambda: defaultdict(_BatchStats))


def _has_span(work: Work, name: str) -> bool:
    return any(span[0] == name for span in work.spans)


def _span_ns(work: Work, names: frozenset[str]) -> int:
    total: int = sum(int(span[2]) for span in work.spans if span[0] in names)
    return total * 1000


class ModelStatistics:
    """Per-model counters of finished requests; `serve`'s lifespan subscribes `record` to the
    engine (`Engine.on_finished`) and the OIP routes read `model_json`."""

    def __init__(self, models: list[str]) -> None:
        # Only the models served: a rejected request may name any model, and each name kept
        # would be memory a caller could grow at will.
        self._served = frozenset(models)
        self._models: dict[str, _ModelStats] = defaultdict(_ModelStats)

    def record(self, group: list[Work]) -> None:
        """A group the engine finished: one batch's rows, or rejections."""
        # Rows the model ran (a rejection written again under a new ID keeps its spans).
        executed = [w for w in group if w.status != "rejected" and _has_span(w, "inference")]
        for work in group:
            name = work.model_name
            if name not in self._served:
                continue
            stats = self._models[name]
            total_ns = work.latency_us * 1000
            if work.status != "ok":
                stats.stages["fail"].add(total_ns)
                continue
            stats.stages["success"].add(total_ns)
            stats.stages["queue"].add(_span_ns(work, _QUEUE))
            stats.stages["compute_input"].add(_span_ns(work, _INPUT_SPANS))
            stats.stages["compute_infer"].add(_span_ns(work, _INFER))
            stats.stages["compute_output"].add(_span_ns(work, _WRITE))
            stats.inference_count += 1
            stats.last_inference_ms = time.time_ns() // 1_000_000
        executed_model = executed[0].model_name if executed else None
        if executed_model in self._served:
            # One `Committer.write` per batch the model ran: one execution of len(group) rows.
            stats = self._models[executed_model]
            stats.execution_count += 1
            batch = stats.batches[len(executed)]
            batch.compute_input.add(sum(_span_ns(w, _INPUT_SPANS) for w in executed))
            batch.compute_infer.add(_span_ns(executed[0], _INFER))
            batch.compute_output.add(max(_span_ns(w, _WRITE) for w in executed))

    def model_json(self, name: str, version: str) -> dict[str, Any]:
        """One model's entry of `model_stats`, as Triton writes it."""
        stats = self._models.get(name) or _ModelStats()
        stages = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
        inference = {stage: stats.stages.get(stage, Duration()).as_json() for stage in stages}
        inference["cache_hit"] = inference["cache_miss"] = Duration().as_json()
        return {
            "name": name,
            "version": version,
            "last_inference": stats.last_inference_ms,
            "inference_count": stats.inference_count,
            "execution_count": stats.execution_count,
            "inference_stats": inference,
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": batch.compute_input.as_json(),
                    "compute_infer": batch.compute_infer.as_json(),
                    "compute_output": batch.compute_output.as_json(),
                }
                for size, batch in sorted(stats.batches.items())
            ],
            "memory_usage": [],
        }
