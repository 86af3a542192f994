"""The OIP statistics extension's counters, fed finished requests as the engine hands them over:
one group per batch the model ran, rejections in groups of their own."""

from __future__ import annotations

from typing import Any

from engine.server.oip.statistics import ModelStatistics
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
    assert list(stats._models) == []
    assert stats.model_json("iris", "1")["inference_stats"]["fail"]["count"] == 0
