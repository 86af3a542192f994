"""The OIP statistics extension's counters, fed finished requests as the engine hands them over:
one group per batch the model ran, rejections in groups of their own."""

from __future__ import annotations

import os
from typing import Any

import pytest

from engine.server.oip.statistics import ModelStatistics, StatisticsTable
from engine.stats import RunRecorder
from engine.work import FutureSink, Work


def _work(status: str, *, model: str | None = "iris", named: str | None = None) -> Work:
    spans: list[Any] = [("validate", 0, 10), ("metadata", 10, 5)]
    if status != "rejected" or named is None:
        spans += [("queue_wait", 15, 100), ("inference", 115, 400, {"batch_size": 2})]
    spans.append(("write", 515, 50))
    return Work(
        request_id="r",
        run=RunRecorder("run", "test"),
        sink=FutureSink(),
        source="http",
        client_id="oip",
        model=None,
        features=None,
        priority=0,
        input_json=None,
        accepted_ns=0,
        created_us=0,
        spans=spans,
        status=status,
        latency_us=600,
        named_model=named if named is not None else model,
    )


def test_a_batch_is_one_execution_of_its_rows_with_each_stage_counted() -> None:
    stats = ModelStatistics(["iris"])
    stats.record([_work("ok"), _work("ok")])
    found = stats.model_json("iris", "1")
    assert (found["inference_count"], found["execution_count"]) == (2, 1)
    inference = found["inference_stats"]
    assert inference["success"] == {"count": 2, "ns": 1_200_000}
    assert inference["queue"] == {"count": 2, "ns": 200_000}
    assert inference["compute_input"] == {"count": 2, "ns": 30_000}
    assert inference["compute_infer"] == {"count": 2, "ns": 800_000}
    assert inference["compute_output"] == {"count": 2, "ns": 100_000}
    assert found["batch_stats"] == [
        {
            "batch_size": 2,
            "compute_input": {"count": 1, "ns": 30_000},
            "compute_infer": {"count": 1, "ns": 400_000},
            "compute_output": {"count": 1, "ns": 50_000},
        }
    ]


def test_rejections_count_as_fails_and_never_as_executions() -> None:
    """A row declined at commit (its ID was taken) is written again as a rejection and still
    carries its inference span: it must not count a second execution."""
    stats = ModelStatistics(["iris"])
    stats.record([_work("ok")])
    stats.record([_work("rejected")])  # re-written, spans kept
    found = stats.model_json("iris", "1")
    assert found["execution_count"] == 1
    assert found["inference_stats"]["fail"] == {"count": 1, "ns": 600_000}
    assert len(found["batch_stats"]) == 1


def test_models_that_are_not_served_are_not_kept() -> None:
    """A rejected request may name any model: each name kept would be memory a caller grows."""
    stats = ModelStatistics(["iris"])
    for i in range(1000):
        stats.record([_work("rejected", model=None, named=f"no-such-model-{i}")])
    assert stats.table.cells.shape[:2] == (1, 1)  # one worker, one model: no more
    assert stats.model_json("iris", "1")["inference_stats"]["fail"]["count"] == 0


def test_forked_workers_add_to_one_shared_table_and_any_of_them_reads_the_sum() -> None:
    """`serve --workers N`: the parent's table is shared across fork; each worker writes its
    own block, and a read in any process (here the parent) sums them."""
    table = StatisticsTable(["iris"], max_batch=8, workers=3)
    children = []
    for slot, rows in ((0, 1), (1, 2), (2, 3)):
        pid = os.fork()
        if pid == 0:  # a worker: claims its block, records `rows` executions of 2 rows
            try:
                table.claim(slot)
                stats = ModelStatistics(["iris"], 8, table)
                for _ in range(rows):
                    stats.record([_work("ok"), _work("ok")])
                stats.record([_work("failed")])
            finally:
                os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    found = ModelStatistics(["iris"], 8, table).model_json("iris", "1")
    # A failed row went through the model: an execution of one.
    assert (found["inference_count"], found["execution_count"]) == (12, 9)
    assert found["inference_stats"]["fail"]["count"] == 3
    assert found["inference_stats"]["success"] == {"count": 12, "ns": 12 * 600_000}
    assert [b["batch_size"] for b in found["batch_stats"]] == [1, 2]
    assert found["batch_stats"][1]["compute_infer"] == {"count": 6, "ns": 6 * 400_000}
    assert found["last_inference"] > 0
    with pytest.raises(ValueError, match="slot 3"):
        table.claim(3)


def test_a_batch_larger_than_the_table_counts_its_rows_but_no_batch_entry() -> None:
    stats = ModelStatistics(["iris"], max_batch=1)
    stats.record([_work("ok"), _work("ok")])
    found = stats.model_json("iris", "1")
    assert found["inference_count"] == 2 and found["batch_stats"] == []
