"""The figures of a server's own statistics, from cumulative counters to per-interval means.

Every source (the OIP statistics extension, a Prometheus exposition, a Prometheus server) turns
what it read into a `Snapshot`: the cumulative value of each series feeding each figure, and the
gauges now. `Deltas` turns consecutive snapshots into the growth of each figure over the
interval, series by series, so a counter that goes down (a restarted replica, a worker that
replaced a dead one) counts again from zero instead of subtracting; `Totals` sums those growths,
per replica; `ServerInterval` is what an interval means: requests, throughput, mean stage times
per request (a total time divided by the requests it covers, never a mean of means), mean batch
size and the queue depth at its end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Counters of events; time totals (part `s`: seconds, part `c`: their own count, when the
# source has one); gauges read at the snapshot.
COUNTS = ("requests", "failures", "inferences", "executions")
TIMES = ("queue", "compute_input", "compute_infer", "compute_output", "server")
GAUGES = ("pending",)
COMPUTE = ("compute_input", "compute_infer", "compute_output")

# The interval fields a figure gives, for choosing a source per field and naming what is missing.
FIELD_FIGURES: dict[str, tuple[str, ...]] = {
    "failures": ("failures",),
    "queue_ms": ("queue",),
    "compute_input_ms": ("compute_input",),
    "compute_infer_ms": ("compute_infer",),
    "compute_output_ms": ("compute_output",),
    "server_ms": ("server",),
    "pending": ("pending",),
    "batch_size_mean": ("inferences", "executions"),
}
# How `problems()` says a field is missing from every source that works.
MISSING_WORDS = {
    "failures": "no failure counter",
    "queue_ms": "no queue time",
    "compute_input_ms": "no compute-input time",
    "compute_infer_ms": "no compute-infer time",
    "compute_output_ms": "no compute-output time",
    "server_ms": "no whole-request time",
    "pending": "no pending-requests gauge",
    "batch_size_mean": "no batch sizes (inferences and executions)",
}

SeriesKey = tuple[str, str, str, str]  # (instance, figure, part, series)
Sums = dict[tuple[str, str], float]  # (figure, part) -> growth
# A series not seen for this many snapshots is forgotten (label churn must not grow memory).
_FORGET_AFTER = 120


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One read of one source: cumulative series values and gauges, at one moment."""

    at: float  # monotonic seconds
    at_us: int  # wall clock, µs since the epoch
    counters: dict[SeriesKey, float]
    gauges: dict[tuple[str, str], float]  # (instance, figure) -> value now
    figures: frozenset[str]  # the figures the source has at all (even with no series now)
    counted: frozenset[str]  # time figures with their own count of observations
    instances: frozenset[str]
    family: str = ""  # the mapping that matched, for metrics sources
    notes: tuple[str, ...] = ()  # problems worth showing that did not stop the read


@dataclass(slots=True)
class Growth:
    """What one source saw between two snapshots: per-instance growth and the later gauges."""

    seconds: float
    at_us: int
    sums: dict[str, Sums]  # instance -> growth
    gauges: dict[tuple[str, str], float]
    figures: frozenset[str]
    counted: frozenset[str]
    instances: frozenset[str]


class Deltas:
    """Consecutive snapshots of one source -> growth, one series at a time."""

    def __init__(self) -> None:
        self._last: dict[SeriesKey, tuple[float, int]] = {}
        self._previous: Snapshot | None = None
        self._generation = 0

    @property
    def started(self) -> bool:
        return self._previous is not None

    def advance(self, snap: Snapshot) -> Growth | None:
        """The growth since the previous snapshot (None for the first one). A series first seen
        after the first snapshot counts from zero: it was born since (a model's first request,
        a new replica). A series missing from one snapshot keeps its last value, so a gap in a
        scrape does not count it again when it comes back."""
        self._generation += 1
        gen = self._generation
        previous = self._previous
        sums: dict[str, Sums] = defaultdict(dict)
        for key, value in snap.counters.items():
            last = self._last.get(key)
            self._last[key] = (value, gen)
            if previous is None:
                continue
            # Born since, or reset: counted from zero.
            grew = value if last is None or value < last[0] else value - last[0]
            part = (key[1], key[2])
            one = sums[key[0]]
            one[part] = one.get(part, 0.0) + grew
        if gen % _FORGET_AFTER == 0:
            self._last = {k: v for k, v in self._last.items() if gen - v[1] < _FORGET_AFTER}
        self._previous = snap
        if previous is None:
            return None
        for instance in snap.instances:
            sums.setdefault(instance, {})
        return Growth(
            seconds=max(snap.at - previous.at, 1e-9),
            at_us=snap.at_us,
            sums=dict(sums),
            gauges=dict(snap.gauges),
            figures=snap.figures,
            counted=snap.counted,
            instances=snap.instances,
        )


class Totals:
    """The sum of a source's growths over the whole watch, and its largest gauges."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.intervals = 0
        self.sums: dict[str, Sums] = defaultdict(dict)
        self.pending_max: dict[str, float] = {}
        self.pending_max_total: float | None = None
        self.figures: frozenset[str] = frozenset()
        self.counted: frozenset[str] = frozenset()

    def add(self, growth: Growth) -> None:
        self.seconds += growth.seconds
        self.intervals += 1
        self.figures |= growth.figures
        self.counted |= growth.counted
        for instance, part_sums in growth.sums.items():
            mine = self.sums[instance]
            for key, value in part_sums.items():
                mine[key] = mine.get(key, 0.0) + value
        self.see_gauges(growth.gauges)

    def see_gauges(self, gauges: dict[tuple[str, str], float]) -> None:
        pending = {inst: v for (inst, fig), v in gauges.items() if fig == "pending"}
        for instance, value in pending.items():
            self.pending_max[instance] = max(self.pending_max.get(instance, value), value)
        if pending:
            total = sum(pending.values())
            self.pending_max_total = max(self.pending_max_total or total, total)


def combined(per_instance: dict[str, Sums]) -> Sums:
    out: Sums = {}
    for part_sums in per_instance.values():
        for key, value in part_sums.items():
            out[key] = out.get(key, 0.0) + value
    return out


def figures_of(
    sums: Sums,
    figures: frozenset[str],
    counted: frozenset[str],
    seconds: float,
    pending: float | None,
) -> dict[str, Any]:
    """The interval fields from one source's growth: counts, means per request, batch size."""
    requests = round(sums.get(("requests", "n"), 0.0))

    def count(figure: str) -> float | None:
        return sums.get((figure, "n"), 0.0) if figure in figures else None

    def mean_ms(figure: str) -> float | None:
        if figure not in figures:
            return None
        total = sums.get((figure, "s"), 0.0)
        n = sums.get((figure, "c"), 0.0) if figure in counted else float(requests)
        return total / n * 1000 if n > 0 else None

    failures = count("failures")
    inferences, executions = count("inferences"), count("executions")
    stages = {f"{figure}_ms": mean_ms(figure) for figure in COMPUTE}
    present = [v for v in stages.values() if v is not None]
    return {
        "requests": requests,
        "failures": None if failures is None else round(failures),
        "throughput_per_s": requests / seconds if seconds > 0 else 0.0,
        "queue_ms": mean_ms("queue"),
        **stages,
        "compute_ms": sum(present) if present else None,
        "server_ms": mean_ms("server"),
        "pending": pending if "pending" in figures else None,
        "batch_size_mean": (
            inferences / executions
            if inferences is not None and executions is not None and executions > 0
            else None
        ),
    }


def pick(
    named: Sequence[tuple[str, frozenset[str], dict[str, Any]]],
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Merge per-source fields, in priority order: counts from the first source (the primary),
    each other field from the first source that has its figures. Returns the fields, the
    sources used, and the fields no source has."""
    name, _figures, first = named[0]
    out = dict(first)
    used = {name}
    missing: list[str] = []
    for field_name, needs in FIELD_FIGURES.items():
        for source, figures, fields in named:
            if all(f in figures for f in needs):
                out[field_name] = fields[field_name]
                used.add(source)
                break
        else:
            missing.append(field_name)
    # Compute time follows the stages it sums, wherever they came from.
    stages = [out[f"{f}_ms"] for f in COMPUTE if out[f"{f}_ms"] is not None]
    out["compute_ms"] = sum(stages) if stages else None
    return out, sorted(used), missing


@dataclass(frozen=True, slots=True)
class IntervalFigures:
    """The figures of one interval between two snapshots, a whole server's or one replica's:
    means are per request in the interval, `pending` is the gauge at its end."""

    at_us: int  # wall clock (µs since the epoch) at the end of the interval
    seconds: float
    source: str  # "oip-stats", "metrics", "prometheus", or several joined by "+"
    requests: int
    failures: int | None
    throughput_per_s: float
    queue_ms: float | None
    compute_input_ms: float | None
    compute_infer_ms: float | None
    compute_output_ms: float | None
    compute_ms: float | None
    server_ms: float | None
    pending: float | None
    batch_size_mean: float | None


@dataclass(frozen=True, slots=True)
class ReplicaInterval(IntervalFigures):
    """One replica's share of a fleet's interval (a Prometheus `instance`)."""

    instance: str

    def to_dict(self) -> dict[str, Any]:
        return {"instance": self.instance} | {
            k: getattr(self, k) for k in IntervalFigures.__dataclass_fields__
        }


@dataclass(frozen=True, slots=True)
class ServerInterval(IntervalFigures):
    """One interval's totals over the whole server or fleet, and each replica's share."""

    replicas: tuple[ReplicaInterval, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "replicas"}
        out["replicas"] = [r.to_dict() for r in self.replicas]
        return out


def replicas_of(
    growth: Growth, source: str, instances: Iterable[str]
) -> tuple[ReplicaInterval, ...]:
    """Per-instance intervals of a fleet's growth, sorted by instance."""
    out = []
    for instance in sorted(instances):
        sums = growth.sums.get(instance, {})
        pending = growth.gauges.get((instance, "pending"))
        fields = figures_of(sums, growth.figures, growth.counted, growth.seconds, pending)
        if "pending" in growth.figures and pending is None:
            fields["pending"] = 0.0
        out.append(
            ReplicaInterval(
                instance=instance,
                at_us=growth.at_us,
                seconds=growth.seconds,
                source=source,
                **fields,
            )
        )
    return tuple(out)
