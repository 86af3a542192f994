"""Which Prometheus names stand for which figure: the mapping file (`metric_names.toml`, its own
comments document the format), a user's file merged over it, and the matching of samples to
figures that the exposition and Prometheus sources share.

A mapping is plain data checked by pydantic (`extra="forbid"`: a misspelt key is reported, not
silently ignored); metric names must be Prometheus names, since they end up inside a regular
expression of a PromQL query.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.remote.server_stats.figures import COUNTS, GAUGES, TIMES, Snapshot

NAMES_ENV = "INFERDECK_METRIC_NAMES"
NAMES_FILE = "metric_names.toml"
_METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MAX_USER_FILE = 1 << 20


class MetricRef(BaseModel):
    """One figure's metric: names, which sample, unit and label filters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: tuple[str, ...] = Field(min_length=1, max_length=16)
    take: Literal["sum", "count"] | None = None
    unit: Literal["s", "ms", "us", "ns"] = "s"
    labels: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("metric", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("metric")
    @classmethod
    def _prometheus_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.match(_METRIC_NAME, name) or len(name) > 200:
                raise ValueError(f"{name!r} is not a Prometheus metric name")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _values(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (v,) if isinstance(v, str) else v for k, v in value.items()}
        return value


class Family(BaseModel):
    """The names of one kind of server (a table of the mapping file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shown: str = Field(min_length=1, max_length=64)
    model_label: str | None = None
    requests: MetricRef
    failures: MetricRef | None = None
    inferences: MetricRef | None = None
    executions: MetricRef | None = None
    queue: MetricRef | None = None
    compute_input: MetricRef | None = None
    compute_infer: MetricRef | None = None
    compute_output: MetricRef | None = None
    server: MetricRef | None = None
    pending: MetricRef | None = None

    def refs(self) -> dict[str, MetricRef]:
        """The figures this family maps, by figure name."""
        return {
            figure: ref
            for figure in (*COUNTS, *TIMES, *GAUGES)
            if (ref := getattr(self, figure)) is not None
        }


@dataclass(frozen=True, slots=True)
class _Reading:
    """How one sample name feeds one figure: `part` is `n` (a count), `s` (seconds) or `c` (a
    time figure's own count of observations); `scale` turns the value into that part."""

    figure: str
    part: str
    scale: float
    labels: tuple[tuple[str, frozenset[str]], ...]


class Matcher:
    """A family compiled for fast lookups: sample name -> the figures it feeds."""

    def __init__(self, name: str, family: Family) -> None:
        self.name = name
        self.family = family
        self.by_sample: dict[str, list[_Reading]] = {}
        for figure, ref in family.refs().items():
            labels = tuple((k, frozenset(v)) for k, v in ref.labels.items())
            for metric in ref.metric:
                for sample, part, scale in _samples(figure, ref, metric):
                    self.by_sample.setdefault(sample, []).append(
                        _Reading(figure, part, scale, labels)
                    )

    def figures_present(self, names: Iterable[str]) -> tuple[set[str], set[str]]:
        """The figures whose names appear among these sample names, and the time figures that
        have their own count of observations."""
        found: set[str] = set()
        counted: set[str] = set()
        for name in names:
            for reading in self.by_sample.get(name, ()):
                found.add(reading.figure)
                if reading.part == "c":
                    counted.add(reading.figure)
        return found, counted

    def snapshot(
        self,
        samples: Iterable[tuple[str, Mapping[str, str], float]],
        model: str | None,
        instance_label: str | None,
        at: float,
        at_us: int,
    ) -> Snapshot:
        """A source's snapshot: every matching series' value, model and label filters applied.
        `instance_label`: the label that names a replica (a Prometheus server's `instance`);
        None for one server's own exposition."""
        counters: dict[tuple[str, str, str, str], float] = {}
        gauges: dict[tuple[str, str], float] = {}
        names: set[str] = set()
        instances: set[str] = set()
        models_seen: set[str] = set()
        model_label = self.family.model_label
        kept_requests = False
        for name, labels, value in samples:
            readings = self.by_sample.get(name)
            if readings is None:
                continue
            names.add(name)
            if value != value or value in (float("inf"), float("-inf")):
                continue  # NaN or infinite: no figure can use it
            if model is not None and model_label is not None and model_label in labels:
                models_seen.add(labels[model_label])
                if labels[model_label] != model:
                    continue
            instance = labels.get(instance_label, "") if instance_label else ""
            series: str | None = None
            for reading in readings:
                if any(labels.get(k) not in allowed for k, allowed in reading.labels):
                    continue
                instances.add(instance)
                if reading.figure == "requests":
                    kept_requests = True
                if reading.figure in GAUGES:
                    key = (instance, reading.figure)
                    gauges[key] = gauges.get(key, 0.0) + value * reading.scale
                    continue
                if series is None:
                    series = name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                counters[(instance, reading.figure, reading.part, series)] = value * reading.scale
        figures, counted = self.figures_present(names)
        notes: list[str] = []
        if "requests" in figures and not kept_requests and model is not None and models_seen:
            seen = ", ".join(sorted(models_seen)[:5])
            notes.append(f"no series for model {model!r} (models seen: {seen})")
        return Snapshot(
            at=at,
            at_us=at_us,
            counters=counters,
            gauges=gauges,
            figures=frozenset(figures),
            counted=frozenset(counted),
            instances=frozenset(instances),
            family=self.family.shown,
            notes=tuple(notes),
        )


def _samples(figure: str, ref: MetricRef, metric: str) -> list[tuple[str, str, float]]:
    """The sample names (with part and scale) one metric gives one figure (see the file's
    comments: which sample is read)."""
    if ref.take == "sum":
        part = "s" if figure in TIMES else "n"
        return [(f"{metric}_sum", part, _UNITS[ref.unit] if figure in TIMES else 1.0)]
    if ref.take == "count":
        return [(f"{metric}_count", "c" if figure in TIMES else "n", 1.0)]
    if figure in GAUGES:
        return [(metric, "g", 1.0)]
    if figure in COUNTS:
        return [(metric, "n", 1.0), (f"{metric}_total", "n", 1.0), (f"{metric}_count", "n", 1.0)]
    scale = _UNITS[ref.unit]
    return [
        (metric, "s", scale),
        (f"{metric}_total", "s", scale),
        (f"{metric}_sum", "s", scale),
        (f"{metric}_count", "c", 1.0),
    ]


def choose(matchers: Iterable[Matcher], names: Iterable[str]) -> Matcher | None:
    """The family whose names match the most figures, `requests` among them (file order breaks
    a tie); None when none has its `requests`."""
    present = set(names)
    best: Matcher | None = None
    best_count = 0
    for matcher in matchers:
        found, _ = matcher.figures_present(present)
        if "requests" in found and len(found) > best_count:
            best, best_count = matcher, len(found)
    return best


def builtin_table() -> dict[str, Any]:
    text = resources.files("engine.remote.server_stats").joinpath(NAMES_FILE).read_text("utf-8")
    return tomllib.loads(text)


def user_file() -> tuple[Path | None, bool]:
    """The user's mapping file and whether it was asked for by name (`$INFERDECK_METRIC_NAMES`:
    a missing file is then a problem, not just an absent option)."""
    named = os.environ.get(NAMES_ENV)
    if named:
        return Path(named).expanduser(), True
    path = Path(platformdirs.user_config_dir("inferdeck")) / NAMES_FILE
    return (path if path.is_file() else None), False


def load_matchers(path: Path | None = None) -> tuple[list[Matcher], list[str]]:
    """The built-in mapping with the user's file merged over it (`path`, or `user_file()`),
    compiled; and the problems met, one line each (a bad user table is left out, the built-in
    one of that name kept)."""
    problems: list[str] = []
    table = builtin_table()
    families: dict[str, dict[str, Any]] = {k: dict(v) for k, v in table.items()}
    named = True
    if path is None:
        path, named = user_file()
    user: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_USER_FILE + 1)
            if len(data) > MAX_USER_FILE:
                raise ValueError(f"over {MAX_USER_FILE:,} bytes")
            user = tomllib.loads(data.decode("utf-8"))
        except FileNotFoundError:
            if named:
                problems.append(f"metric names file {path}: not found (ignored)")
        except (OSError, ValueError) as exc:  # TOMLDecodeError and UnicodeDecodeError too
            problems.append(f"metric names file {path}: {_one_line(exc)} (ignored)")
    for name, value in user.items():
        if not isinstance(value, dict):
            problems.append(f"metric names file {path}: {name!r} is not a table (ignored)")
            continue
        merged = {**families.get(name, {}), **value}
        try:
            Family.model_validate(merged)
        except ValidationError as exc:
            problems.append(f"metric names file {path}: [{name}] {_validation(exc)} (ignored)")
            continue
        families[name] = merged
    matchers = [Matcher(name, Family.model_validate(value)) for name, value in families.items()]
    return matchers, problems


def _validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "table"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
