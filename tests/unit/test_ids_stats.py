"""Request/run IDs (UUIDv7) and latency bookkeeping (HDR histograms, the live window)."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
from hdrh.histogram import HdrHistogram

import engine.stats as stats_mod
from engine.ids import new_id
from engine.stats import LiveStats, RunRecorder


def test_new_id_is_a_uuid_version_7_with_the_current_time() -> None:
    before_ms = time.time_ns() // 1_000_000
    value = new_id()
    after_ms = time.time_ns() // 1_000_000
    parsed = uuid.UUID(value)
    assert str(parsed) == value  # canonical lower-case 8-4-4-4-12 form
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    stamp_ms = parsed.int >> 80
    # The counter may borrow a millisecond or two from the future under heavy use.
    assert before_ms <= stamp_ms <= after_ms + 2


def test_new_ids_are_unique_and_sort_in_generation_order() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert all(uuid.UUID(x).version == 7 for x in ids[::97])


def test_new_ids_are_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(2_500))

    threads = [threading.Thread(target=make, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [x for out in results for x in out]
    assert len(set(everything)) == 10_000
    for out in results:  # each thread still sees its own IDs in order
        assert sorted(out) == out


def test_run_recorder_percentiles_come_from_the_histogram() -> None:
    run = RunRecorder(new_id(), "test")
    # 100 µs .. 1 s in 100 µs steps: p50 = 500 ms, p90 = 900 ms, p99 = 990 ms, max = 1 s.
    for i in range(1, 10_001):
        run.record("ok", i * 100)
    run.record("rejected", 5)  # neither counted in the latencies nor as a failure
    run.record("failed", 5)
    run.accepted = 10_002
    run.finish()
    summary = run.summary()
    assert (summary.accepted, summary.ok, summary.rejected, summary.failed) == (
        10_002,
        10_000,
        1,
        1,
    )
    lat = summary.latency_ms
    assert lat.p50 == pytest.approx(500.0, rel=0.01)
    assert lat.p90 == pytest.approx(900.0, rel=0.01)
    assert lat.p99 == pytest.approx(990.0, rel=0.01)
    assert lat.p999 == pytest.approx(999.0, rel=0.01)
    assert lat.max == pytest.approx(1000.0, rel=0.01)
    assert summary.duration_s > 0
    assert summary.throughput_per_s > 0


def test_run_recorder_clamps_out_of_range_latencies() -> None:
    run = RunRecorder(new_id(), "test")
    run.record("ok", 0)  # below the histogram's 1 µs floor
    run.record("ok", 10**12)  # above its 10 minute ceiling
    assert run.histogram.get_total_count() == 2
    assert run.summary().latency_ms.max == pytest.approx(600_000.0, rel=0.01)


def test_empty_run_summary_has_zero_percentiles() -> None:
    summary = RunRecorder(new_id(), "test").summary()
    assert summary.ok == 0
    assert summary.latency_ms.p50 == summary.latency_ms.max == 0.0


def test_encoded_histogram_decodes_to_the_same_counts() -> None:
    run = RunRecorder(new_id(), "test")
    for i in range(1, 5_001):
        run.record("ok", i * 37)
    encoded = run.encoded_histogram()
    assert isinstance(encoded, bytes) and encoded
    decoded = HdrHistogram.decode(encoded)
    assert decoded.get_total_count() == 5_000
    assert decoded.get_max_value() == run.histogram.get_max_value()
    for pct in (50, 90, 99, 99.9):
        assert decoded.get_value_at_percentile(pct) == run.histogram.get_value_at_percentile(pct)
    # Stored histograms merge: two runs' decoded histograms add up.
    decoded.add(HdrHistogram.decode(encoded))
    assert decoded.get_total_count() == 10_000


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_live_stats_window_drops_old_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(1_000.2)
    monkeypatch.setattr(stats_mod, "time", SimpleNamespace(monotonic=clock.monotonic))
    live = LiveStats(window_s=5)

    for _ in range(10):
        live.record("ok", 1_000, [("inference", 0, 400), ("write", 400, 600)])
    live.record("failed", 50_000, [])
    live.record("rejected", 10, [])  # neither ok nor an error in the live view
    snap = live.snapshot(queue_depth=3, in_flight=2)
    assert (snap.completed, snap.errors) == (10, 1)
    assert (snap.queue_depth, snap.in_flight) == (3, 2)
    assert snap.p50_ms == pytest.approx(1.0, rel=0.01)
    assert snap.stage_ms == pytest.approx({"inference": 0.4, "write": 0.6})

    clock.now = 1_002.5
    for _ in range(10):
        live.record("ok", 9_000, [("inference", 0, 8_000)])
    snap = live.snapshot(0, 0)
    assert snap.completed == 20
    assert snap.p50_ms == pytest.approx(1.0, rel=0.01)
    assert snap.p99_ms == pytest.approx(9.0, rel=0.01)
    # 20 ok over the 2.5 s since the first bucket's second began.
    assert snap.throughput_per_s == pytest.approx(20 / 2.5)
    assert snap.errors_per_s == pytest.approx(1 / 2.5)

    # Second 1000 leaves the 5 s window (buckets at or before now - 5 are dropped).
    clock.now = 1_006.2
    snap = live.snapshot(0, 0)
    assert snap.completed == 20  # totals are cumulative
    assert snap.errors == 1
    assert snap.p50_ms == pytest.approx(9.0, rel=0.01)
    assert snap.errors_per_s == 0.0
    assert snap.throughput_per_s == pytest.approx(10 / (1_006.2 - 1_002))
    assert snap.stage_ms == pytest.approx({"inference": 8.0})

    clock.now = 1_020.0  # everything has left the window
    snap = live.snapshot(0, 0)
    assert snap.throughput_per_s == 0.0
    assert snap.p50_ms == snap.p99_ms == 0.0
    assert snap.stage_ms == {}
    assert snap.completed == 20
