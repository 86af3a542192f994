"""The three places a server's own figures come from, each read with a bounded GET.

- `OipStatsSource`: OIP's statistics extension, `GET {base}/v2/models/{m}/stats` (or
  `/v2/models/stats` for every model), in Triton's shape, which `inferdeck serve` answers too.
- `MetricsSource`: a Prometheus exposition (`/metrics` of Triton, MLServer, KServe, `serve`).
- `PrometheusSource`: a Prometheus server's instant query over a fleet, grouped by `instance`.

Every read is bounded in bytes (decoded, `engine.remote.bodies.read_capped`) and in time (one
deadline over the fetch and the parse), and parsing runs on a worker thread, never on the event
loop that sends the load: a big exposition costs seconds of pure Python. A parse that outlives
its deadline keeps running on its thread; the source skips its turns until that parse ends, so
a hostile endpoint cannot pile up work. Nothing here raises to the watcher: a read ends in a
`Snapshot` or in `problem`, one line saying what went wrong with the URL redacted.

Credentials: the target's headers and token go only to the target's own origin (same scheme,
host and port); a metrics URL or a Prometheus on another host gets none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from engine.remote.bodies import read_capped
from engine.remote.classify import BodyError, classify, describe
from engine.remote.credentials import redact_url, scrub
from engine.remote.server_stats.figures import Deltas, Snapshot, Totals
from engine.remote.server_stats.names import Matcher, choose
from engine.remote.targets import Target

# One source's read, fetch and parse together: a stalled server costs a poll no more than this.
SOURCE_TIMEOUT_S = 1.5
EXPOSITION_CAP = 8 << 20  # bytes, decoded
STATS_CAP = 4 << 20
QUERY_CAP = 8 << 20
USER_AGENT = "inferdeck-server-stats/0.1"
# Lines of an exposition checked for syntax when none of them is a known name (garbage or not).
_SYNTAX_SAMPLE = 50


class Unreadable(Exception):
    """An answer that is not what the source reads; the message says what it is instead."""


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (the default filled in): where a credential may go."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def url_secret_values(url: str) -> list[str]:
    """The credential values a URL carries (user info, credential query values), for scrubbing
    messages that might echo it."""
    parts = urlsplit(url)
    values = []
    if "@" in parts.netloc:
        values += parts.netloc.rpartition("@")[0].split(":")
    shown = urlsplit(redact_url(url)).query.split("&")
    real = parts.query.split("&")
    values += [r.partition("=")[2] for r, s in zip(real, shown, strict=False) if r != s]
    return [v for v in values if v]


class Fetcher:
    """One small HTTP client for every source of a watcher: capped bodies, no redirects (a
    redirect could carry the target's headers elsewhere), no proxies from the environment."""

    def __init__(self, target: Target, token: str | None, extra_secrets: Iterable[str]) -> None:
        self._origin = origin(target.base_url)
        self._own_headers = dict(target.headers)
        if token:
            self._own_headers["authorization"] = f"Bearer {token}"
        self.secrets = [
            *target.secret_values(),
            *([token] if token else []),
            *extra_secrets,
        ]
        self.client = httpx.AsyncClient(
            verify=target.verify_tls,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(SOURCE_TIMEOUT_S),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            headers={"user-agent": USER_AGENT, "accept-encoding": "identity"},
        )

    def is_own(self, url: str) -> bool:
        return origin(url) == self._origin

    async def get(self, url: str | httpx.URL, accept: str, limit: int) -> tuple[int, bytes]:
        """Status and body (decoded, at most `limit` bytes or `BodyError`). The caller bounds
        the time."""
        headers = {"accept": accept}
        if self.is_own(str(url)):
            headers.update(self._own_headers)
        async with self.client.stream("GET", url, headers=headers) as response:
            length = response.headers.get("content-length", "")
            plain = "content-encoding" not in response.headers
            if plain and length.isdigit() and int(length) > limit:
                raise BodyError("too_large", f"content-length {length}")
            body = await read_capped(
                response.aiter_raw(), response.headers.get("content-encoding"), limit
            )
            return response.status_code, body

    def reason(self, exc: BaseException, limit: int) -> str:
        """What a failed read means, in words, with no credential in it."""
        if isinstance(exc, TimeoutError):
            return f"no answer within {SOURCE_TIMEOUT_S:g} s (slow or stalled)"
        if isinstance(exc, Unreadable):
            return scrub(str(exc), self.secrets)[:300]
        if isinstance(exc, BodyError):
            if exc.kind == "too_large":
                return f"answer too large (over {limit / (1 << 20):g} MB; not read)"
            return f"unreadable answer ({scrub(str(exc), self.secrets)[:200]})"
        kind = classify(exc)
        if kind == "connect_refused":
            return "down (connection refused)"
        if kind == "connect_timeout":
            return "down (connect timed out)"
        return f"{kind}: {scrub(describe(exc), self.secrets)}"

    async def aclose(self) -> None:
        await self.client.aclose()


class Source:
    """One place figures come from: its reads, its deltas, its totals and its state."""

    kind = ""
    cap = EXPOSITION_CAP

    def __init__(self, url: str, automatic: bool) -> None:
        self.url = url
        self.automatic = automatic
        self.deltas = Deltas()
        self.totals = Totals()
        self.problem: str | None = None  # the last read's failure
        self.notes: tuple[str, ...] = ()  # the last read's lesser problems
        self.last: Snapshot | None = None  # the last good read
        self.dropped = False  # an automatic source that did not answer at start
        self.transient = False  # whether `problem` is slowness, which may pass
        self._busy: asyncio.Future[Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {redact_url(self.url)}"

    def in_use(self) -> str:
        return self.label

    @property
    def working(self) -> bool:
        """Whether the last read gave figures (requests among them)."""
        return self.problem is None and self.last is not None and "requests" in self.last.figures

    async def read(self, fetcher: Fetcher, executor: Executor) -> Snapshot | None:
        """One bounded read; None (and `problem` set) when it failed.

        A parse that outlived the previous read's deadline is not wasted: its snapshot carries
        the time of its fetch, so this read takes it instead of fetching again (a legitimately
        big exposition then gives a snapshot every other poll), and while it still runs this
        read is skipped."""
        busy = self._busy
        if busy is not None and not busy.done():
            self.problem = "still parsing its previous answer (too big or too slow to parse)"
            self.transient = True
            return None
        try:
            if busy is not None and not busy.cancelled():
                self._busy = None
                snap: Snapshot = busy.result()
            else:
                async with asyncio.timeout(SOURCE_TIMEOUT_S):
                    status, body = await fetcher.get(self.request_url(), self.accept, self.cap)
                    at, at_us = time.monotonic(), time.time_ns() // 1000
                    parse = self.parser(status, body, at, at_us)
                    self._busy = asyncio.get_running_loop().run_in_executor(executor, parse)
                    # Shielded: a deadline ends the wait, not the parse (`_busy` tracks it).
                    snap = await asyncio.shield(self._busy)
                    self._busy = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a hostile server's answer is data, never a crash
            if self._busy is not None and self._busy.done():
                self._busy = None  # a parse that failed is reported once, here
            self.problem = fetcher.reason(exc, self.cap)
            self.transient = isinstance(exc, TimeoutError)
            return None
        self.problem = None
        self.notes = snap.notes
        self.last = snap
        return snap

    def request_url(self) -> str | httpx.URL:
        return self.url

    accept = "*/*"

    def parser(self, status: int, body: bytes, at: float, at_us: int) -> Callable[[], Snapshot]:
        raise NotImplementedError


class OipStatsSource(Source):
    """OIP's statistics extension, Triton's shape: stage counts and nanoseconds per model."""

    kind = "oip-stats"
    cap = STATS_CAP
    accept = "application/json"

    @property
    def label(self) -> str:
        return f"OIP statistics {redact_url(self.url)}"

    def in_use(self) -> str:
        return "OIP statistics"

    def parser(self, status: int, body: bytes, at: float, at_us: int) -> Callable[[], Snapshot]:
        def parse() -> Snapshot:
            if status != 200:
                raise Unreadable(f"HTTP {status} (statistics not offered)")
            return parse_stats(body, at, at_us)

        return parse


def stats_url(target: Target) -> str:
    model = target.model
    path = f"/v2/models/{quote(model, safe='')}/stats" if model else "/v2/models/stats"
    return target.url(path)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.isdigit():  # uint64 as a string (protobuf's JSON)
        return float(value)
    return None


_STAGES = {
    "queue": "queue",
    "compute_input": "compute_input",
    "compute_infer": "compute_infer",
    "compute_output": "compute_output",
    "success": "server",
}


def parse_stats(body: bytes, at: float, at_us: int) -> Snapshot:
    """A `model_stats` answer -> a snapshot: success count as requests, each stage's ns as
    seconds with its own count, inference and execution counts, summed over every entry
    (every version of the model, or every model)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Unreadable("not JSON (not the OIP statistics extension)") from None
    entries = data.get("model_stats") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise Unreadable("no `model_stats` list (not the OIP statistics extension)")
    counters: dict[tuple[str, str, str, str], float] = {}
    figures: set[str] = set()
    for index, entry in enumerate(entries[:10_000]):
        if not isinstance(entry, dict):
            continue
        series = f"{entry.get('name', '')}/{entry.get('version', '')}/{index}"[:300]
        stats = entry.get("inference_stats")
        if not isinstance(stats, dict):
            continue
        for stage, figure in _STAGES.items():
            block = stats.get(stage)
            if not isinstance(block, dict):
                continue
            count, ns = _number(block.get("count")), _number(block.get("ns"))
            if count is None or ns is None:
                continue
            counters[("", figure, "s", series)] = ns / 1e9
            counters[("", figure, "c", series)] = count
            figures.add(figure)
            if stage == "success":
                counters[("", "requests", "n", series)] = count
                figures.add("requests")
        fail = stats.get("fail")
        if isinstance(fail, dict) and (count := _number(fail.get("count"))) is not None:
            counters[("", "failures", "n", series)] = count
            figures.add("failures")
        for key, figure in (("inference_count", "inferences"), ("execution_count", "executions")):
            if (value := _number(entry.get(key))) is not None:
                counters[("", figure, "n", series)] = value
                figures.add(figure)
    if "requests" not in figures:
        raise Unreadable("no `inference_stats.success` counts (not the statistics extension)")
    times = frozenset(figures & set(_STAGES.values()))
    return Snapshot(at, at_us, counters, {}, frozenset(figures), times, frozenset({""}))


class MetricsSource(Source):
    """One server's Prometheus exposition, mapped through `metric_names.toml`."""

    kind = "metrics"
    cap = EXPOSITION_CAP
    accept = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

    def __init__(
        self, url: str, automatic: bool, matchers: list[Matcher], model: str | None
    ) -> None:
        super().__init__(url, automatic)
        self.matchers = matchers
        self.model = model
        self.chosen: Matcher | None = None

    def in_use(self) -> str:
        shown = f" ({self.chosen.family.shown})" if self.chosen else ""
        return f"{self.label}{shown}"

    def parser(self, status: int, body: bytes, at: float, at_us: int) -> Callable[[], Snapshot]:
        chosen = self.chosen

        def parse() -> Snapshot:
            if status != 200:
                raise Unreadable(f"HTTP {status}")
            matcher, snap = parse_exposition(body, self.matchers, chosen, self.model, at, at_us)
            # One family for the whole watch: switching would break the deltas.
            if matcher is not None and self.chosen is None:
                self.chosen = matcher
            return snap

        return parse


def _sample_name(line: str) -> str:
    end = len(line)
    for stop in ("{", " ", "\t"):
        at = line.find(stop)
        if 0 <= at < end:
            end = at
    return line[:end]


def parse_exposition(
    body: bytes,
    matchers: list[Matcher],
    chosen: Matcher | None,
    model: str | None,
    at: float,
    at_us: int,
) -> tuple[Matcher | None, Snapshot]:
    """An exposition -> the family that matches and a snapshot. Only the lines of known names
    go through prometheus-client's parser (a server's exposition is mostly other things: GPU,
    process, Python figures, histogram buckets, which cost most of the parse); when no line is
    of a known name, the first lines are parsed anyway, to tell text that is not Prometheus's
    from an exposition of names nobody mapped."""
    text = body.decode("utf-8", errors="replace")
    wanted: set[str] = set()
    for matcher in [chosen] if chosen else matchers:
        wanted.update(matcher.by_sample)
    kept: list[str] = []
    head: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(head) < _SYNTAX_SAMPLE:
            head.append(line)
        if _sample_name(line) in wanted:
            kept.append(line)
    try:
        families = list(text_string_to_metric_families("\n".join(kept or head) + "\n"))
    except Exception as exc:  # the parser raises ValueError, and others on odd input
        raise Unreadable(f"not Prometheus text ({' '.join(str(exc).split())[:120]})") from None
    if not kept:
        note = "no known metric names (map them in metric_names.toml)" if head else "empty"
        return None, _empty(at, at_us, note)
    samples = [(s.name, s.labels, float(s.value)) for f in families for s in f.samples]
    found = chosen or choose(matchers, (s[0] for s in samples))
    if found is None:
        return None, _empty(at, at_us, "no requests counter among the known names yet")
    return found, found.snapshot(samples, model, None, at, at_us)


def _empty(at: float, at_us: int, note: str) -> Snapshot:
    """A read that worked and found nothing to use (yet): series born later count from zero."""
    return Snapshot(at, at_us, {}, {}, frozenset(), frozenset(), frozenset(), "", (note,))


class PrometheusSource(Source):
    """A Prometheus server's view of a fleet: one instant query for every mapped name under
    the selector, per `instance`."""

    kind = "prometheus"
    cap = QUERY_CAP
    accept = "application/json"

    def __init__(self, url: str, selector: str, matchers: list[Matcher], model: str | None) -> None:
        super().__init__(url, automatic=False)
        self.selector = selector
        self.matchers = matchers
        self.model = model
        self.chosen: Matcher | None = None
        self.replicas = 0

    @property
    def label(self) -> str:
        return f"Prometheus {redact_url(self.url)} {self.selector}"

    def in_use(self) -> str:
        shown = f" ({self.chosen.family.shown})" if self.chosen else ""
        plural = "replica" if self.replicas == 1 else "replicas"
        return f"{self.label}{shown}, {self.replicas} {plural}"

    def query(self) -> str:
        wanted: set[str] = set()
        for matcher in [self.chosen] if self.chosen else self.matchers:
            wanted.update(matcher.by_sample)
        names = "|".join(sorted(wanted))
        return f'{{__name__=~"{names}",{selector_matchers(self.selector)}}}'

    def request_url(self) -> httpx.URL:
        parts = urlsplit(self.url)
        base = parts._replace(path=parts.path.rstrip("/") + "/api/v1/query").geturl()
        return httpx.URL(base).copy_merge_params({"query": self.query()})

    def parser(self, status: int, body: bytes, at: float, at_us: int) -> Callable[[], Snapshot]:
        chosen = self.chosen

        def parse() -> Snapshot:
            samples = parse_query(status, body)
            matcher = chosen or choose(self.matchers, (s[0] for s in samples))
            if matcher is None:
                note = (
                    "no known metric names under the selector yet"
                    if not samples
                    else "no requests counter among the known names yet"
                )
                return _empty(at, at_us, note)
            if self.chosen is None:
                self.chosen = matcher
            snap = matcher.snapshot(samples, self.model, "instance", at, at_us)
            self.replicas = len(snap.instances)
            return snap

        return parse


def parse_query(status: int, body: bytes) -> list[tuple[str, dict[str, str], float]]:
    """A Prometheus instant query's vector -> samples; its error, in its own words."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Unreadable(f"HTTP {status}, not a Prometheus API answer") from None
    if not isinstance(data, dict):
        raise Unreadable(f"HTTP {status}, not a Prometheus API answer")
    if data.get("status") != "success":
        said = f"{data.get('errorType', '')}: {data.get('error', '')}".strip(": ")
        raise Unreadable(f"HTTP {status}, Prometheus refused the query: {said[:200]}")
    result = data.get("data", {}).get("result") if isinstance(data.get("data"), dict) else None
    if not isinstance(result, list):
        raise Unreadable("Prometheus answered without a result vector")
    samples: list[tuple[str, dict[str, str], float]] = []
    for item in result:
        if not isinstance(item, dict):
            continue
        metric, value = item.get("metric"), item.get("value")
        if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
            continue
        name = metric.get("__name__")
        try:
            number = float(value[1])
        except (TypeError, ValueError):
            continue
        if isinstance(name, str):
            labels = {str(k): str(v) for k, v in metric.items() if k != "__name__"}
            samples.append((name, labels, number))
    return samples


def selector_matchers(selector: str) -> str:
    """The label matchers inside a selector (`{job="x"}` or `job="x"` -> `job="x"`); ValueError
    for anything else (a metric name in front, unbalanced braces, nothing at all)."""
    text = selector.strip()
    if text.startswith("{") and text.endswith("}"):
        inner = text[1:-1].strip()
    elif "{" in text or "}" in text:
        raise ValueError(
            f"selector {selector[:80]!r}: give label matchers only, e.g. '{{job=\"inferdeck\"}}'"
        )
    else:
        inner = text
    inner = inner.rstrip(",").strip()
    if not inner or "{" in inner or "}" in inner:
        raise ValueError(
            f"selector {selector[:80]!r}: give label matchers, e.g. '{{job=\"inferdeck\"}}'"
        )
    if len(inner) > 1000:
        raise ValueError("selector over 1,000 characters")
    return inner
