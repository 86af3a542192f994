"""Prometheus metrics for `GET /metrics`, with prometheus-client: request counts by model and
outcome, duration histograms per stage, batch sizes, pending requests, model readiness, the
build, and each worker's memory.

Filled from the engine's own spans (`Engine.on_finished`), as the OIP statistics are, so every
route counts alike. With `serve --workers N` the workers are separate processes: `inferdeck
serve` then points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder before any worker imports
prometheus-client, each worker writes its values there, and a scrape of any worker reads all of
them (`MultiProcessCollector`): the figures are the service's, not one worker's.

The README's "Metrics" section maps each name to Triton's and KServe's equivalents.
"""

from __future__ import annotations

import asyncio
import os
import platform
import resource
from collections.abc import Callable
from importlib import metadata

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from engine.work import Work

__all__ = [
    "CONTENT_TYPE_LATEST",
    "MULTIPROC_ENV",
    "OTHER_MODEL",
    "ServiceMetrics",
    "multiprocess",
    "resident_bytes",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The `model` label of requests that named no model served (unknown names, unreadable bodies).
OTHER_MODEL = "_other"
# No `_created` series: a timestamp per series per scrape that no dashboard here reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds: a request here takes from a tenth of a millisecond (one row, idle) to seconds
# (a deep queue); a bucket per step of about 2.5× keeps the series few.
_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
_STAGES = {"queue": ("queue_wait",), "inference": ("inference",), "write": ("write",)}
# How often each worker refreshes its pending-requests and memory gauges.
_REFRESH_S = 0.5


def multiprocess() -> bool:
    """Whether this process shares its metrics with other workers (see the module's note)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def resident_bytes() -> int:
    """This process's resident set now (`/proc/self/statm`), or its peak where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ServiceMetrics:
    """The service's metrics: `record` listens to the engine, `refresh_forever` keeps the
    gauges current, `exposition` answers a scrape."""

    def __init__(self, models: list[str]) -> None:
        shared = multiprocess()
        # In one process a registry of its own (tests build many apps in one process); across
        # workers the values live in files and a scrape collects them (`exposition`).
        self._registry = None if shared else CollectorRegistry(auto_describe=True)
        reg = self._registry
        if reg is not None:
            ProcessCollector(registry=reg)  # process_resident_memory_bytes and friends
        self._served = frozenset(models)
        self.requests = Counter(
            "inferdeck_requests",
            "Requests finished, by model and outcome (ok, rejected, failed).",
            ["model", "outcome"],
            registry=reg,
        )
        self.request_seconds = Histogram(
            "inferdeck_request_duration_seconds",
            "Whole request: accepted to committed, for requests that ran.",
            ["model"],
            buckets=_SECONDS,
            registry=reg,
        )
        self.stage_seconds = {
            stage: Histogram(
                f"inferdeck_{stage}_duration_seconds",
                f"The {stage} stage of each request that ran.",
                ["model"],
                buckets=_SECONDS,
                registry=reg,
            )
            for stage in _STAGES
        }
        self.batch_size = Histogram(
            "inferdeck_batch_size",
            "Rows per execution of the model (count: executions; sum: rows run).",
            ["model"],
            buckets=_BATCH,
            registry=reg,
        )
        self.pending = Gauge(
            "inferdeck_pending_requests",
            "Requests accepted and not yet answered: queued plus running (all workers).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(
            "inferdeck_model_ready",
            "1 while the model is loaded and serving in every live worker.",
            ["model"],
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.memory = Gauge(
            "inferdeck_worker_resident_memory_bytes",
            "Each worker process's resident memory.",
            registry=reg,
            multiprocess_mode="liveall",
        )
        build = Gauge(
            "inferdeck_build_info",
            "The build serving: always 1, its versions in labels.",
            ["version", "python", "torch"],
            registry=reg,
            multiprocess_mode="max",
        )
        build.labels(_version("inferdeck"), platform.python_version(), _version("torch")).set(1)
        # Children made once per model: `labels()` takes a lock and a dict lookup per call.
        self._ok = {m: self.requests.labels(m, "ok") for m in models}
        self._request = {m: self.request_seconds.labels(m) for m in models}
        self._stage = {
            m: [(_STAGES[stage], hist.labels(m)) for stage, hist in self.stage_seconds.items()]
            for m in models
        }
        self._batch = {m: self.batch_size.labels(m) for m in models}
        for model in models:  # a model that fails to load stays at 0
            self.ready.labels(model).set(0)

    def set_ready(self, models: list[str], ready: bool) -> None:
        """Mark the models that loaded as serving (or, on the way out, not)."""
        for model in models:
            if model in self._served:
                self.ready.labels(model).set(1 if ready else 0)

    def record(self, group: list[Work]) -> None:
        """A group the engine finished (`Engine.on_finished`): one batch's rows, or rejections."""
        executed = 0
        for work in group:
            name = work.model_name
            if name not in self._served:
                # A rejected request may name anything: one series for all strangers.
                self.requests.labels(OTHER_MODEL, work.status).inc()
                continue
            assert name is not None
            if work.status != "ok":
                self.requests.labels(name, work.status).inc()
                continue
            self._ok[name].inc()
            self._request[name].observe(work.latency_us / 1e6)
            spans = work.spans
            for names, hist in self._stage[name]:
                hist.observe(sum(s[2] for s in spans if s[0] in names) / 1e6)
            if any(s[0] == "inference" for s in spans):
                executed += 1
        if executed:
            # One `Committer.write` per batch the model ran (see oip.statistics).
            model = group[0].model_name
            if model in self._batch:
                self._batch[model].observe(executed)

    async def refresh_forever(self, pending: Callable[[], int]) -> None:
        """Keep this worker's pending-requests and memory gauges current until cancelled."""
        while True:
            self.pending.set(pending())
            self.memory.set(resident_bytes())
            await asyncio.sleep(_REFRESH_S)

    def exposition(self) -> bytes:
        """The text format for a scrape: this process's registry, or every worker's files."""
        if self._registry is not None:
            return generate_latest(self._registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
