"""`ServerWatcher`: a remote server's own statistics over a run, from whatever sources answer.

Which sources: those the operator names (`ServerSources.metrics_url`, `prometheus_url` with
`selector`) and, unless `automatic` is off, the target's own OIP statistics extension (`oip` and
`inferdeck` targets: `serve` offers it too) and, when no metrics URL is given, `{base}/metrics`,
each tried once at start and kept only if it answered. A Prometheus server stands for a fleet:
with one, the target's own automatic sources are not read (behind a balancer they would show
one replica as the whole).

How figures combine, per interval and for the summary: sources are ranked Prometheus, OIP
statistics, metrics; requests and throughput come from the first that works, every other field
(queue, each compute stage, whole request, pending, batch size) from the first working source
that has it, so OIP statistics give the stage times and a `/metrics` the queue depth. A field
no working source has is `None` and named in `problems()` and the summary's `missing`.

Bounds: sources are read concurrently, each within `SOURCE_TIMEOUT_S` for fetch and parse, and
a poll is cut at `POLL_BOUND_S` whatever happens; parsing runs on this watcher's own small
thread pool. `poll`, `start` and `stop` never raise for anything a server does.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from engine.remote.credentials import redact_url
from engine.remote.server_stats.figures import (
    FIELD_FIGURES,
    MISSING_WORDS,
    Growth,
    ReplicaInterval,
    ServerInterval,
    Totals,
    combined,
    figures_of,
    pick,
    replicas_of,
)
from engine.remote.server_stats.names import load_matchers
from engine.remote.server_stats.sources import (
    Fetcher,
    MetricsSource,
    OipStatsSource,
    PrometheusSource,
    Source,
    selector_matchers,
    stats_url,
    url_secret_values,
)
from engine.remote.targets import Target
from engine.tasks import TaskOwner

log = logging.getLogger(__name__)

POLL_BOUND_S = 2.0  # a poll's whole time, whatever its sources do
MAX_SERIES = 7200  # intervals kept: two hours at one a second
_PRIORITY = {"prometheus": 0, "oip-stats": 1, "metrics": 2}


@dataclass(frozen=True, slots=True)
class ServerSources:
    """Where a target's server-side statistics come from, besides what it offers itself.

    Construction checks the combination (ValueError with a one-line message): a Prometheus URL
    needs a selector of label matchers, URLs must be http(s)."""

    metrics_url: str | None = None  # a Prometheus exposition of the server
    prometheus_url: str | None = None  # a Prometheus server's base URL (a fleet)
    selector: str | None = None  # label matchers for it, e.g. '{job="inferdeck"}'
    automatic: bool = True  # False: no automatic sources at all (--no-server-stats)

    def __post_init__(self) -> None:
        for name in ("metrics_url", "prometheus_url"):
            url = getattr(self, name)
            if url is not None and not url.lower().startswith(("http://", "https://")):
                raise ValueError(f"{name.replace('_', ' ')} {redact_url(url)!r}: not http(s)")
        if self.prometheus_url and not self.selector:
            raise ValueError("a Prometheus URL needs a selector, e.g. '{job=\"inferdeck\"}'")
        if self.selector is not None:
            selector_matchers(self.selector)


class ServerWatcher:
    """Snapshots of a server's own statistics, as intervals, a series and a summary."""

    def __init__(
        self,
        target: Target,
        sources: ServerSources,
        *,
        token: str | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self.target = target
        self.sources_asked = sources
        self.interval_s = max(interval_s, 0.05)
        self._token = token
        matchers, problems = load_matchers()
        self._static: list[str] = problems
        model = target.model
        chosen: list[Source] = []
        if sources.prometheus_url and sources.selector:
            chosen.append(
                PrometheusSource(sources.prometheus_url, sources.selector, matchers, model)
            )
        automatic = sources.automatic and not sources.prometheus_url
        if automatic and target.protocol in ("oip", "inferdeck"):
            chosen.append(OipStatsSource(stats_url(target), automatic=True))
        if sources.metrics_url:
            chosen.append(MetricsSource(sources.metrics_url, False, matchers, model))
        if automatic and target.protocol in ("oip", "inferdeck") and not sources.metrics_url:
            chosen.append(MetricsSource(target.url("/metrics"), True, matchers, model))
        if not chosen and sources.automatic:
            self._static.append(
                f"no server-side source for a {target.protocol} target "
                "(give a metrics URL or a Prometheus server)"
            )
        self._sources = chosen
        urls = [u for u in (sources.metrics_url, sources.prometheus_url) if u]
        self._secrets = [v for u in urls for v in url_secret_values(u)]
        self._fetcher: Fetcher | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._tasks = TaskOwner()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._started = self._stopped = False
        self._series: deque[ServerInterval] = deque(maxlen=MAX_SERIES)

    # ------------------------------------------------------------------ life cycle

    async def start(self, *, periodic: bool = True) -> None:
        """Find which sources answer (bounded by one poll's time), take the first snapshot,
        and with `periodic` poll every `interval_s` in a task of its own."""
        if self._started or self._stopped:
            return
        self._started = True
        try:
            self._fetcher = Fetcher(self.target, self._token, self._secrets)
            self._executor = ThreadPoolExecutor(
                max_workers=max(len(self._sources), 1), thread_name_prefix="server-stats"
            )
            await self._poll_locked()
            for source in self._sources:
                # An automatic source that fails at start is not what this server offers.
                # A slow one is kept: slowness may pass, a 404 will not.
                if source.automatic and source.problem is not None and not source.transient:
                    source.dropped = True
                    self._static.append(f"{source.label}: {source.problem}; not used")
        except Exception as exc:
            self._internal(exc)
        if periodic and self._live() and not self._stopped:
            self._task = self._tasks.spawn(self._run(), name=f"server-stats:{self.target.name}")

    async def poll(self) -> ServerInterval | None:
        """Take a snapshot now: the interval since the previous one (None before there are two,
        or when no source works)."""
        if not self._started:
            await self.start(periodic=False)
            return None
        if self._stopped or self._fetcher is None:
            return None
        try:
            return await self._poll_locked()
        except Exception as exc:
            self._internal(exc)
            return None

    async def stop(self) -> None:
        """One last poll, then the task stopped and the clients closed; idempotent."""
        if self._stopped:
            return
        task, self._task = self._task, None
        try:
            # A poll in progress ends first (bounded by POLL_BOUND_S): cancelled half-way, it
            # would leave a source's parse running, and the last poll would skip that source
            # and lose its last interval. Holding the lock, the task is cancelled between polls.
            async with self._lock:
                if task is not None:
                    task.cancel()
                if self._started and self._fetcher is not None:
                    await self._poll()
        except Exception as exc:
            self._internal(exc)
        finally:
            if task is not None:
                task.cancel()  # already, unless the wait for the lock was itself cut short
                await asyncio.gather(task, return_exceptions=True)
            self._stopped = True
            if self._fetcher is not None:
                try:
                    await self._fetcher.aclose()
                except Exception as exc:
                    self._internal(exc)
            if self._executor is not None:
                # A parse still running ends on its own (bounded by the byte cap); nothing waits.
                self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        """Poll on a fixed schedule: a slow poll skips the slots it overran, never bursts."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        slot = 0
        while True:
            slot += 1
            now = loop.time()
            if now > start + slot * self.interval_s:
                slot = math.ceil((now - start) / self.interval_s)
            await asyncio.sleep(start + slot * self.interval_s - now)
            await self.poll()

    # ------------------------------------------------------------------ reading

    def _live(self) -> list[Source]:
        return [s for s in self._sources if not s.dropped]

    async def _poll_locked(self) -> ServerInterval | None:
        async with self._lock:
            return await self._poll()

    async def _poll(self) -> ServerInterval | None:
        fetcher, executor = self._fetcher, self._executor
        assert fetcher is not None and executor is not None
        live = self._live()
        if not live:
            return None
        tasks = {asyncio.ensure_future(s.read(fetcher, executor)): s for s in live}
        done, pending = await asyncio.wait(tasks, timeout=POLL_BOUND_S)
        for task in pending:  # each source bounds itself; this is the backstop
            task.cancel()
            tasks[task].problem = f"no answer within {POLL_BOUND_S:g} s"
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        growths: list[tuple[Source, Growth]] = []
        for task in done:
            source = tasks[task]
            snap = task.result() if not task.cancelled() and task.exception() is None else None
            if snap is None:
                continue
            growth = source.deltas.advance(snap)
            if growth is None:
                source.totals.see_gauges(snap.gauges)
                continue
            source.totals.add(growth)
            if "requests" in growth.figures:
                growths.append((source, growth))
        if not growths:
            return None
        growths.sort(key=lambda sg: _PRIORITY[sg[0].kind])
        if growths[0][0].kind == "prometheus":
            growths = growths[:1]  # a fleet's figures do not mix with one server's
        interval = self._interval(growths)
        self._series.append(interval)
        return interval

    def _interval(self, growths: list[tuple[Source, Growth]]) -> ServerInterval:
        named = []
        for source, growth in growths:
            pending = [v for (_i, f), v in growth.gauges.items() if f == "pending"]
            gauge = sum(pending) if pending else (0.0 if "pending" in growth.figures else None)
            fields = figures_of(
                combined(growth.sums), growth.figures, growth.counted, growth.seconds, gauge
            )
            named.append((source.kind, growth.figures, fields))
        fields, used, _missing = pick(named)
        primary, growth = growths[0]
        replicas: tuple[ReplicaInterval, ...] = ()
        if primary.kind == "prometheus":
            replicas = replicas_of(growth, primary.kind, growth.instances)
        return ServerInterval(
            at_us=growth.at_us,
            seconds=growth.seconds,
            source="+".join(used),
            replicas=replicas,
            **fields,
        )

    # ------------------------------------------------------------------ what it found

    def _working(self) -> list[Source]:
        ranked = sorted((s for s in self._live() if s.working), key=lambda s: _PRIORITY[s.kind])
        if ranked and ranked[0].kind == "prometheus":
            return ranked[:1]
        return ranked

    def in_use(self) -> list[str]:
        """The sources that work now, in words, credentials redacted."""
        return [source.in_use() for source in self._working()]

    def problems(self) -> list[str]:
        """What is missing or failing, one line each."""
        lines = list(self._static)
        for source in self._live():
            if source.problem is not None:
                lines.append(f"{source.label}: {source.problem}")
            lines.extend(f"{source.label}: {note}" for note in source.notes)
        working = self._working()
        if working:
            have = frozenset().union(*(s.last.figures for s in working if s.last is not None))
            for field_name, needs in FIELD_FIGURES.items():
                if not all(f in have for f in needs):
                    lines.append(MISSING_WORDS[field_name])
        return lines

    def latest(self) -> ServerInterval | None:
        return self._series[-1] if self._series else None

    def series(self) -> list[ServerInterval]:
        """Every interval since start, oldest first (the last `MAX_SERIES`)."""
        return list(self._series)

    def summary(self) -> dict[str, Any] | None:
        """The whole watch, first to last snapshot: the run's `server` object, or None when no
        source gave an interval."""
        ranked = sorted(
            (s for s in self._sources if s.totals.intervals and "requests" in s.totals.figures),
            key=lambda s: _PRIORITY[s.kind],
        )
        if not ranked:
            return None
        if ranked[0].kind == "prometheus":
            ranked = ranked[:1]
        named = []
        for source in ranked:
            totals = source.totals
            fields = _summary_fields(combined(totals.sums), totals, totals.pending_max_total)
            named.append((source.kind, totals.figures, fields))
        fields, used, missing = pick(named)
        out: dict[str, Any] = {"source": "+".join(used), **_public(fields), "missing": missing}
        primary = ranked[0]
        if primary.kind == "prometheus":
            totals = primary.totals
            out["replicas"] = [
                {
                    "instance": instance,
                    **_public(_summary_fields(sums, totals, totals.pending_max.get(instance))),
                }
                for instance, sums in sorted(totals.sums.items())
            ]
        return out

    def _internal(self, exc: Exception) -> None:
        """A bug of ours, not the server's: kept as a problem line, the traceback in the log."""
        log.debug("server statistics failed", exc_info=exc)
        line = f"server statistics stopped on an internal error: {type(exc).__name__}"
        if line not in self._static:
            self._static.append(line)


def _summary_fields(
    sums: dict[tuple[str, str], float], totals: Totals, pending_max: float | None
) -> dict[str, Any]:
    fields = figures_of(sums, totals.figures, totals.counted, totals.seconds, None)
    fields["pending"] = (
        pending_max if pending_max is not None else (0.0 if "pending" in totals.figures else None)
    )
    return fields


def _public(fields: dict[str, Any]) -> dict[str, Any]:
    """The summary's keys: `pending_max` for the gauge, no per-second rate."""
    return {
        "requests": fields["requests"],
        "failures": fields["failures"],
        "queue_ms": fields["queue_ms"],
        "compute_ms": fields["compute_ms"],
        "compute_input_ms": fields["compute_input_ms"],
        "compute_infer_ms": fields["compute_infer_ms"],
        "compute_output_ms": fields["compute_output_ms"],
        "server_ms": fields["server_ms"],
        "pending_max": fields["pending"],
        "batch_size_mean": fields["batch_size_mean"],
    }
