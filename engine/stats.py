"""Latency and throughput bookkeeping: per-run HDR histograms and live windowed snapshots.

Percentiles always come from HDR histograms (`hdrhistogram`), never from sorting samples, so runs
can be encoded, stored, compared and merged.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from engine.contracts import LatencyPercentiles, RunSummary

# Latencies are recorded in microseconds, from 1 µs to 10 minutes, 3 significant digits.
_LOWEST_US = 1
_HIGHEST_US = 600_000_000
_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)


def record_us(hist: HdrHistogram, value_us: int) -> None:
    hist.record_value(min(max(value_us, _LOWEST_US), _HIGHEST_US))


def percentile_values(hist: HdrHistogram, percentiles: list[float]) -> dict[float, int]:
    """The value at each percentile, as `HdrHistogram.get_percentile_to_value_dict` gives it
    (the highest value equivalent to the first bucket whose running count reaches the target).

    The library walks its ~20,000 buckets in Python, one by one, up to the largest percentile:
    about 3 ms for second-long latencies, which the app paid 40 times a second on its GUI
    thread. A cumulative sum in numpy finds the same buckets in tens of microseconds."""
    total = hist.get_total_count()
    if total == 0:
        return {p: 0 for p in percentiles}
    counts = np.ctypeslib.as_array(hist.counts, shape=(hist.counts_len,))
    running = np.cumsum(counts, dtype=np.int64)
    values: dict[float, int] = {}
    for p in percentiles:
        target = hist.get_target_count_at_percentile(p)
        index = min(int(np.searchsorted(running, target, side="left")), hist.counts_len - 1)
        value = hist.get_value_from_index(index)
        edge = hist.get_highest_equivalent_value if p else hist.get_lowest_equivalent_value
        values[p] = int(edge(value))
    return values


def percentiles_ms(hist: HdrHistogram) -> LatencyPercentiles:
    if hist.get_total_count() == 0:
        return LatencyPercentiles(p50=0.0, p90=0.0, p99=0.0, p999=0.0, max=0.0)
    values = percentile_values(hist, [50, 90, 99, 99.9])
    return LatencyPercentiles(
        p50=values[50] / 1000,
        p90=values[90] / 1000,
        p99=values[99] / 1000,
        p999=values[99.9] / 1000,
        max=hist.get_max_value() / 1000,
    )


@dataclass
class RunRecorder:
    """Counts and the latency histogram of one run (a file job, a load test, a GUI session)."""

    run_id: str
    kind: str
    started_ns: int = field(default_factory=time.perf_counter_ns)
    ended_ns: int | None = None
    accepted: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    histogram: HdrHistogram = field(default_factory=new_histogram)

    def record(self, status: str, latency_us: int) -> None:
        if status == "ok":
            self.ok += 1
            record_us(self.histogram, latency_us)
        elif status == "rejected":
            self.rejected += 1
        else:
            self.failed += 1

    def finish(self) -> None:
        """Mark the run's end; the first mark holds (a load run marks it when traffic ends,
        before the server's last statistics poll, which is not the run's time)."""
        if self.ended_ns is None:
            self.ended_ns = time.perf_counter_ns()

    def summary(self) -> RunSummary:
        end = self.ended_ns if self.ended_ns is not None else time.perf_counter_ns()
        duration_s = max(end - self.started_ns, 1) / 1e9
        return RunSummary(
            run_id=self.run_id,
            kind=self.kind,
            accepted=self.accepted,
            ok=self.ok,
            rejected=self.rejected,
            failed=self.failed,
            duration_s=round(duration_s, 4),
            throughput_per_s=round(self.ok / duration_s, 1),
            latency_ms=percentiles_ms(self.histogram),
        )

    def encoded_histogram(self) -> bytes:
        encoded: bytes = self.histogram.encode()
        return encoded


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What the live plots draw; published at most `publish_hz` times a second."""

    at: float  # time.monotonic()
    throughput_per_s: float
    errors_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    queue_depth: int
    in_flight: int
    completed: int
    errors: int
    stage_ms: dict[str, float]  # mean time per stage over the window


@dataclass
class _Second:
    """One second of completed requests in `LiveStats`' window."""

    second: int
    hist: HdrHistogram = field(default_factory=new_histogram)
    ok: int = 0
    errors: int = 0
    stage_us: dict[str, int] = field(default_factory=dict)


class LiveStats:
    """A sliding window of one-second buckets over completed requests."""

    def __init__(self, window_s: int = 5) -> None:
        self.window_s = window_s
        self._buckets: deque[_Second] = deque()
        self.completed = 0
        self.errors = 0

    def _bucket(self) -> _Second:
        now = int(time.monotonic())
        if not self._buckets or self._buckets[-1].second != now:
            self._buckets.append(_Second(now))
            while self._buckets[0].second <= now - self.window_s:
                self._buckets.popleft()
        return self._buckets[-1]

    def record(self, status: str, latency_us: int, spans: list[tuple[Any, ...]]) -> None:
        bucket = self._bucket()
        if status == "ok":
            self.completed += 1
            bucket.ok += 1
            record_us(bucket.hist, latency_us)
            stage = bucket.stage_us
            for span in spans:
                stage[span[0]] = stage.get(span[0], 0) + span[2]
        elif status != "rejected":
            self.errors += 1
            bucket.errors += 1

    def snapshot(
        self, queue_depth: int, in_flight: int, since: float | None = None
    ) -> StatsSnapshot:
        """The window's figures now. `since` (a `time.monotonic()` reading, e.g. a load run's
        start) is when counting began: the window is measured from it while it is younger
        than the window, so a run's rate is right from its first second."""
        now = time.monotonic()
        self._bucket()  # drops buckets that left the window
        merged = new_histogram()
        ok = errors = 0
        stage_us: dict[str, int] = {}
        for bucket in self._buckets:
            merged.add(bucket.hist)
            ok += bucket.ok
            errors += bucket.errors
            for name, total in bucket.stage_us.items():
                stage_us[name] = stage_us.get(name, 0) + total
        # The newest bucket is partial; measure the window from the oldest bucket's start.
        start = float(self._buckets[0].second) if self._buckets else now - 1.0
        if since is not None:
            start = max(start, since)
        span_s = max(now - start, 1e-3)
        pct = percentile_values(merged, [50, 95, 99])
        return StatsSnapshot(
            at=now,
            throughput_per_s=ok / span_s,
            errors_per_s=errors / span_s,
            p50_ms=pct[50] / 1000,
            p95_ms=pct[95] / 1000,
            p99_ms=pct[99] / 1000,
            queue_depth=queue_depth,
            in_flight=in_flight,
            completed=self.completed,
            errors=self.errors,
            stage_ms={name: total / ok / 1000 for name, total in stage_us.items()} if ok else {},
        )
