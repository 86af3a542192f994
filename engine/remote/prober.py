"""Health probes of one target: live / ready / model-ready on an interval, a state, its changes.

Each round GETs the target's health paths (`engine.remote.targets.health_paths`) at once and
judges each by HTTP status alone, 2xx meaning ok: servers disagree on bodies. The round's state:

- `up`: every probe ok;
- `degraded`: live ok, but ready or model-ready not (loading, draining, model missing);
- `down`: live failed, or any probe could not reach the server (refused, connect timeout, TLS,
  reset): a server that closes mid-round answers live and refuses ready, and that is a server
  going down, not one that is loading.

A `json` target has no health contract: one GET of its URL, and any answer below 500 counts.

Rounds run on a fixed schedule with no backoff, so a target that comes back is seen on the next
round. Every probe is stored through the database's group-commit writer (never awaited: a slow
disk must not skew the next round), and the table is pruned to the newest `keep_rows` per target
every `prune_every` rows. State changes reach the app as a plain callback, `on_change(name, old,
new, detail)`; the first round reports the change from `unknown`. `snapshot()` and `history()` are
what a status timeline draws.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from engine.remote.classify import classify, describe, http_class
from engine.remote.credentials import scrub
from engine.remote.secrets import TokenStore
from engine.remote.targets import Target, health_paths
from storage import Database, queries
from storage.writer import WriterClosedError

log = logging.getLogger(__name__)

State = Literal["unknown", "up", "degraded", "down"]
Kind = Literal["live", "ready", "model_ready"]
KINDS: tuple[Kind, ...] = ("live", "ready", "model_ready")

ChangeCallback = Callable[[str, State, State, str], None]
RoundCallback = Callable[["ProbeRound"], None]

KEEP_ROWS = 20_000  # probe rows kept per target: ~2 days of 3 probes every 30 s
PRUNE_EVERY = 1_000  # rows written between two prunes
HISTORY = 600  # rounds kept in memory for the timeline
_BODY_CAP = 64 * 1024  # read this much of a health body, so the connection can be reused


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe of one health path (live, ready or model-ready); stored and drawn per round."""

    kind: Kind
    at_us: int  # wall clock when the probe was sent
    status_code: int | None  # None: no HTTP answer
    ok: bool
    latency_us: int
    error: str | None  # `http_503`, `connect_refused`, `timeout`... (classify's names)


@dataclass(frozen=True, slots=True)
class ProbeRound:
    """One round of a `Prober`: every probe's result and the state they mean."""

    at_us: int
    state: State
    results: tuple[ProbeResult, ...]
    detail: str  # why the state is what it is, in a few words

    def result(self, kind: Kind) -> ProbeResult | None:
        return next((r for r in self.results if r.kind == kind), None)


@dataclass(frozen=True, slots=True)
class StateChange:
    """A change of a target's state, as `Prober` records it for the status timeline."""

    at_us: int
    old: State
    new: State
    detail: str


@dataclass(frozen=True, slots=True)
class ProberSnapshot:
    """What a status view draws: the state, since when, and the recent rounds."""

    target: str
    state: State
    since_us: int | None  # the last state change (None before the first round)
    rounds: int
    last: ProbeRound | None
    changes: tuple[StateChange, ...]
    recent: tuple[ProbeRound, ...]  # oldest first


# Failure classes that mean no server answered at that address (an HTTP status or a slow
# answer still means a server is there).
_UNREACHABLE = frozenset({"connect_refused", "connect_timeout", "reset", "tls"})


def judge(results: tuple[ProbeResult, ...]) -> tuple[State, str]:
    """The state a round's results mean, and a short reason."""
    live = next((r for r in results if r.kind == "live"), None)
    if live is None or not live.ok:
        return "down", f"live: {live.error if live else 'not probed'}"
    failed = [r for r in results if not r.ok]
    unreachable = [r for r in failed if (r.error or "").split(":")[0] in _UNREACHABLE]
    if unreachable:
        return "down", "; ".join(f"{r.kind}: {r.error}" for r in unreachable)
    if failed:
        return "degraded", "; ".join(f"{r.kind}: {r.error}" for r in failed)
    return "up", "all probes ok"


# What each failure class means, in the words a person uses (the class stays, in brackets).
_PLAIN_ERRORS = {
    "connect_refused": "nothing is listening at that address (connection refused)",
    "connect_timeout": "the connection attempt got no answer (connect timeout)",
    "timeout": "it did not answer in time (timeout)",
    "reset": "the connection was cut before the answer (reset)",
    "tls": "the secure connection failed (TLS)",
    "bad_body": "its answer could not be read (bad body)",
    "too_large": "its answer was too large (too large)",
}
_PLAIN_KINDS: dict[str, str] = {
    "live": "liveness check",
    "ready": "readiness check",
    "model_ready": "model check",
}


def plain_error(error: str | None) -> str:
    """A probe's failure class (`connect_refused`, `http_503`, `other: …`) in plain words."""
    if error is None:
        return "answered"
    if error.startswith("http_") and error[5:].isdigit():
        return f"it answered HTTP {error[5:]}"
    kind, _, rest = error.partition(":")
    if kind in _PLAIN_ERRORS:
        return _PLAIN_ERRORS[kind]
    return rest.strip() or error


def plain_reason(done: ProbeRound | None) -> str:
    """Why a round's state is what it is, in plain words ("" while nothing was probed)."""
    if done is None:
        return ""
    if done.state == "up":
        return "every health check answered"
    live = done.result("live")
    if done.state == "down":
        return "not probed" if live is None else plain_error(live.error)
    return "; ".join(
        f"{_PLAIN_KINDS.get(r.kind, r.kind)}: {plain_error(r.error)}"
        for r in done.results
        if not r.ok
    )


def describe_error(exc: BaseException) -> str:
    """A probe's failure as the load runner names it (`engine.remote.classify`), with the
    cause's text where the class alone says too little (TLS, anything unexpected)."""
    kind = classify(exc)
    if kind in ("connect_refused", "connect_timeout", "timeout", "reset"):
        return kind
    return f"{kind}: {describe(exc)}"[:200]


class Prober:
    """Probes one target on an interval. Use as `async with Prober(...)`, or `aclose()` it
    (before closing the database). The token is read once, here: a target whose settings or
    token change gets a new prober."""

    def __init__(
        self,
        target: Target,
        *,
        interval_s: float = 10.0,
        db: Database | None = None,
        tokens: TokenStore | None = None,
        token: str | None = None,
        on_change: ChangeCallback | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        history: int = HISTORY,
        keep_rows: int = KEEP_ROWS,
        prune_every: int = PRUNE_EVERY,
        resume: ProberSnapshot | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the probe interval must be positive")
        self.target = target
        self.interval_s = interval_s
        self.on_change = on_change
        self._state: State = "unknown"
        self._since_us: int | None = None
        self._rounds = 0
        self._recent: deque[ProbeRound] = deque(maxlen=history)
        self._changes: deque[StateChange] = deque(maxlen=history)
        if resume is not None and resume.target == target.name:
            # A replacement prober (a new interval) goes on from where the old one was: the
            # state, since when and the rounds, so "changed" moves only when the state does.
            self._state, self._since_us, self._rounds = resume.state, resume.since_us, resume.rounds
            self._recent.extend(resume.recent)
            self._changes.extend(resume.changes)
        # Storing: every probe's row, and the table pruned to `keep_rows` per target.
        self.db = db
        self.keep_rows = keep_rows
        self.prune_every = prune_every
        self._unpruned = 0
        self._task: asyncio.Task[None] | None = None
        self._paths = self._probe_paths()
        if token is None and tokens is not None:
            token = tokens.get(target.name)
        headers = {"user-agent": "inferdeck-probe/0.1", **target.headers}
        if token:
            headers["authorization"] = f"Bearer {token}"
        # One long-lived client: probes reuse its connection, as the server's other callers do.
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(target.timeout_s, connect=target.connect_timeout_s),
            verify=target.verify_tls,
            transport=transport,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=len(self._paths), max_keepalive_connections=3),
        )
        # A read timeout restarts with every byte; a dripping server is stopped by this.
        self._deadline_s = target.timeout_s + target.connect_timeout_s

    def __repr__(self) -> str:
        return f"Prober({self.target.name!r}, state={self._state!r})"

    @property
    def state(self) -> State:
        return self._state

    @property
    def running(self) -> bool:
        """Whether its background task (`start`) is still probing."""
        return self._task is not None and not self._task.done()

    @property
    def client_closed(self) -> bool:
        """Whether its HTTP client is closed (`aclose`): no connection of it is left open."""
        return self._client.is_closed

    def _probe_paths(self) -> dict[Kind, str]:
        if self.target.protocol == "json":
            return {"live": ""}
        paths = health_paths(self.target)
        found: dict[Kind, str] = {"live": paths.live, "ready": paths.ready}
        if paths.model_ready is not None:
            found["model_ready"] = paths.model_ready
        return found

    async def probe_once(self) -> ProbeRound:
        """One round: every probe at once, the state judged, stored and announced."""
        at_us = time.time_ns() // 1000
        results = tuple(
            await asyncio.gather(
                *(self._probe(kind, path, at_us) for kind, path in self._paths.items())
            )
        )
        state, detail = judge(results)
        done = ProbeRound(at_us, state, results, detail)
        self._rounds += 1
        self._recent.append(done)
        self._store(done)
        if state != self._state:
            old, self._state, self._since_us = self._state, state, at_us
            self._changes.append(StateChange(at_us, old, state, detail))
            if self.on_change is not None:
                try:
                    self.on_change(self.target.name, old, state, detail)
                except Exception:  # a listener's bug must not stop the probes
                    log.exception("probe state listener failed")
        return done

    async def _probe(self, kind: Kind, path: str, at_us: int) -> ProbeResult:
        start = time.perf_counter_ns()
        status: int | None = None
        error: str | None = None
        try:
            async with (
                asyncio.timeout(self._deadline_s),
                self._client.stream("GET", self.target.url(path)) as response,
            ):
                status = response.status_code
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read > _BODY_CAP:
                        break  # health is the status; a huge body is not worth reading
        except Exception as exc:  # every failure is a probe result, never a crash
            # Stored and shown: an exception that echoes the URL must not carry its credentials.
            error = scrub(describe_error(exc), self.target.secret_values())
        latency_us = (time.perf_counter_ns() - start) // 1000
        if status is not None and error is None:
            ok = status < 500 if self.target.protocol == "json" else 200 <= status < 300
            error = None if ok else http_class(status)
        else:
            ok = False
        return ProbeResult(kind, at_us, status, ok, latency_us, error)

    def _store(self, done: ProbeRound) -> None:
        if self.db is None:
            return
        name, state = self.target.name, done.state
        rows = [
            (name, r.at_us, r.kind, r.status_code, int(r.ok), r.latency_us, r.error, state)
            for r in done.results
        ]
        try:
            self.db.writer.add(queries.INSERT_PROBE, rows)
            self._unpruned += len(rows)
            if self._unpruned >= self.prune_every:
                self._unpruned = 0
                self.db.writer.add(queries.PRUNE_PROBES, [(self.target.name, self.keep_rows)])
        except WriterClosedError:
            # Shutting down out of order (the database closed first): keep probing, stop storing.
            log.warning("probes of %s no longer stored: the database is closed", self.target.name)
            self.db = None

    async def run(self, count: int | None = None, on_round: RoundCallback | None = None) -> None:
        """Probe every `interval_s` (a fixed schedule: a slow round does not shift the next
        ones, it skips the slots it overran), `count` rounds or until cancelled."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        slot = rounds = 0
        while count is None or rounds < count:
            done = await self.probe_once()
            rounds += 1
            if on_round is not None:
                on_round(done)
            if count is not None and rounds >= count:
                return
            slot += 1
            now = loop.time()
            if now > start + slot * self.interval_s:  # overran: skip slots, never burst
                slot = math.ceil((now - start) / self.interval_s)
            await asyncio.sleep(start + slot * self.interval_s - now)

    def start(self) -> None:
        """Probe in the background until `stop()`; the task is owned here."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self.run(), name=f"probe:{self.target.name}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        await self.stop()
        await self._client.aclose()

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    def snapshot(self, rounds: int | None = None) -> ProberSnapshot:
        recent = tuple(self._recent)
        return ProberSnapshot(
            target=self.target.name,
            state=self._state,
            since_us=self._since_us,
            rounds=self._rounds,
            last=recent[-1] if recent else None,
            changes=tuple(self._changes),
            recent=recent if rounds is None else recent[-rounds:],
        )

    def history(self, kind: Kind | None = None, limit: int | None = None) -> list[ProbeResult]:
        """Recent probe results, oldest first, of one kind or all."""
        found = [r for rnd in self._recent for r in rnd.results if kind is None or r.kind == kind]
        return found if limit is None else found[-limit:]


async def load_history(db: Database, target: str, limit: int = 1000) -> list[queries.ProbeRow]:
    """Stored probes of a target, oldest first: the timeline before this process started."""
    return await queries.recent_probes(db.reader, target, limit)
