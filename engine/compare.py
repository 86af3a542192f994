"""Comparing two stored runs: their latency distributions and the deltas of their figures.

Qt-free. A run keeps its HDR histogram (`runs.histogram`, hdrh's compressed encoding) beside its
JSON summary; the percentile curve is read from the histogram (the usual HDR plot: latency by
percentile, the percentile axis in "nines" so the tail gets as much room as the body), and the
deltas from the same histogram where there is one, else from the summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from engine.stats import percentile_values, percentiles_ms

# Figures compared, and whether a smaller value is the better one.
FIGURES: tuple[tuple[str, bool], ...] = (
    ("p50 ms", True),
    ("p90 ms", True),
    ("p99 ms", True),
    ("max ms", True),
    ("throughput/s", False),
    ("errors", True),
    # The server's own figures (`server` in a load run's summary), where a source gave them.
    ("server queue ms", True),
    ("server compute ms", True),
    ("server pending max", True),
    ("server batch size", False),
)
SERVER_FIGURES = frozenset(name for name, _ in FIGURES if name.startswith("server "))
# Within this fraction of each other, a change is noise, neither better nor worse; so is one
# that shows as no change at the two decimals every figure is shown with.
SAME_WITHIN = 0.02
SAME_BELOW = 0.005
CURVE_STEP = 0.05  # in nines: 20 points per decade of the tail


def decode_histogram(blob: bytes | None) -> HdrHistogram | None:
    """A stored histogram, or None when there is none or it cannot be read."""
    if not blob:
        return None
    try:
        hist = HdrHistogram.decode(blob)
    except Exception:  # hdrh raises several kinds on a corrupt blob; none is worth a crash
        return None
    return hist if hist.get_total_count() > 0 else None


def nines(percentile: float) -> float:
    """The x position of a percentile on the HDR plot: log10(1 / (1 - p)); 90 % is 1, 99 % 2."""
    return math.log10(100.0 / max(100.0 - percentile, 1e-9))


def percentile_curve(hist: HdrHistogram) -> tuple[list[float], list[float]]:
    """(x in nines, latency ms), from 0 % up to the largest recorded value.

    Points are spaced evenly in nines up to the resolution the count allows (a run of 1,000
    requests says nothing about p99.99), and the maximum closes the curve."""
    total = hist.get_total_count()
    if total == 0:
        return [], []
    top = math.log10(max(total, 10))
    steps = int(top / CURVE_STEP)
    percentiles = [100.0 - 100.0 * 10 ** (-i * CURVE_STEP) for i in range(steps + 1)]
    values = percentile_values(hist, percentiles)
    xs = [i * CURVE_STEP for i in range(steps + 1)]
    ys = [values[p] / 1000 for p in percentiles]
    xs.append(top)
    ys.append(hist.get_max_value() / 1000)
    return xs, ys


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One run's headline figures (latency, throughput, errors) for the Runs view's Compare."""

    run_id: str
    label: str
    values: dict[str, float | None]  # by FIGURES name


def figures(
    run_id: str, label: str, summary: dict[str, Any] | None, hist: HdrHistogram | None
) -> RunFigures:
    summary = summary or {}
    latency = summary.get("latency_ms") or {}
    if hist is not None:
        pct = percentiles_ms(hist)
        lat: dict[str, Any] = {"p50": pct.p50, "p90": pct.p90, "p99": pct.p99, "max": pct.max}
    else:
        lat = latency
    errors = None
    if "failed" in summary or "rejected" in summary:
        errors = float(summary.get("failed", 0) + summary.get("rejected", 0))
    values: dict[str, float | None] = {
        "p50 ms": _num(lat.get("p50")),
        "p90 ms": _num(lat.get("p90")),
        "p99 ms": _num(lat.get("p99")),
        "max ms": _num(lat.get("max")),
        "throughput/s": _num(summary.get("throughput_per_s")),
        "errors": errors,
    }
    server = summary.get("server") or {}
    values["server queue ms"] = _num(server.get("queue_ms"))
    values["server compute ms"] = _num(server.get("compute_ms"))
    values["server pending max"] = _num(server.get("pending_max"))
    values["server batch size"] = _num(server.get("batch_size_mean"))
    return RunFigures(run_id, label, values)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True, slots=True)
class Delta:
    """How one figure changed between two runs, as Compare shows it."""

    name: str
    base: float | None
    other: float | None
    change: float | None  # other - base
    percent: float | None  # change / base, in %; None when base is 0 or missing
    verdict: str  # "better", "worse", "same" or "" (not comparable)


def deltas(base: RunFigures, other: RunFigures) -> list[Delta]:
    """How `other` differs from `base`, figure by figure."""
    out = []
    for name, lower_is_better in FIGURES:
        a, b = base.values.get(name), other.values.get(name)
        if a is None and b is None and name in SERVER_FIGURES:
            continue  # neither run saw the server's own figures: no rows of dashes
        if a is None or b is None:
            out.append(Delta(name, a, b, None, None, ""))
            continue
        change = b - a
        percent = change / a * 100 if a else None
        scale = max(abs(a), abs(b))
        if scale == 0 or abs(change) < SAME_BELOW or abs(change) <= SAME_WITHIN * scale:
            verdict = "same"
        else:
            verdict = "better" if (change < 0) == lower_is_better else "worse"
        out.append(Delta(name, a, b, change, percent, verdict))
    return out
