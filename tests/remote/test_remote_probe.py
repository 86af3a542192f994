"""The health prober against a real server on 127.0.0.1 whose answers a test flips.

States move up -> degraded -> down -> up as the server's statuses change, the server goes away
and comes back on the same port, and every probe lands in a real SQLite file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from fault_server import FaultServer, Rule, tls_contexts
from live_server import free_port

from engine.remote.prober import Prober, ProbeResult, ProbeRound, judge
from engine.remote.target_store import make_target
from engine.remote.targets import Target
from storage import Database, open_database, queries


class FlipServer:
    """Answers GETs with the status set for the path (200 by default); can stop and restart on
    the same port, as a redeployed server does."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.status: dict[str, int] = {}
        self.delay_s: dict[str, float] = {}
        self.seen_headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen_headers.append(dict(request.headers))
        delay = self.delay_s.get(request.path, 0.0)
        if delay:
            await asyncio.sleep(delay)
        status = self.status.get(request.path, 200)
        return web.json_response({"path": request.path}, status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _target(url: str, **fields: object) -> Target:
    return make_target(name="flip", base_url=url, timeout_s=2.0, connect_timeout_s=1.0, **fields)


async def _wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_states_follow_the_server_and_a_server_that_comes_back_is_seen(tmp_path: Path) -> None:
    events: list[tuple[str, str, str, str]] = []

    async def scenario() -> None:
        server = FlipServer()
        await server.start()
        db = await open_database(tmp_path / "p.db")
        prober = Prober(
            _target(server.url, model="iris"),
            db=db,
            token="tok-abc",
            on_change=lambda *event: events.append(event),
        )
        try:
            states: list[str] = []

            async def probe() -> ProbeRound:
                done = await prober.probe_once()
                states.append(done.state)
                return done

            first = await probe()
            assert [r.kind for r in first.results] == ["live", "ready", "model_ready"]
            assert all(r.ok and r.status_code == 200 and r.latency_us > 0 for r in first.results)
            server.status["/ready"] = 503  # loading or draining
            degraded = await probe()
            assert degraded.result("ready") is not None
            assert degraded.result("ready").error == "http_503"  # type: ignore[union-attr]
            server.status.pop("/ready")
            server.status["/models/iris"] = 404  # the model is gone: still degraded, no event
            await probe()
            server.status["/health"] = 500  # live fails: down
            await probe()
            server.status.clear()
            await probe()
            await server.stop()  # the process goes away: refused
            gone = await probe()
            assert gone.result("live").error == "connect_refused"  # type: ignore[union-attr]
            assert gone.result("live").status_code is None  # type: ignore[union-attr]
            await server.start()  # and comes back on the same port
            await probe()
            assert states == ["up", "degraded", "degraded", "down", "up", "down", "up"]
            assert prober.state == "up"
            # The token and the target's headers went with every probe.
            assert all(h.get("Authorization") == "Bearer tok-abc" for h in server.seen_headers)

            await db.writer.flush()
            rows = await queries.recent_probes(db.reader, "flip", limit=100)
            assert len(rows) == 3 * len(states)
            assert [r.state for r in rows[::3]] == states
            refused = [r for r in rows if r.error == "connect_refused"]
            assert {r.kind for r in refused} == {"live", "ready", "model_ready"}
            assert all(r.status_code is None and not r.ok for r in refused)
            assert rows[3 + 1].status_code == 503 and rows[3 + 1].kind == "ready"

            snap = prober.snapshot()
            assert snap.state == "up" and snap.rounds == len(states)
            assert snap.since_us == snap.changes[-1].at_us == snap.last.at_us  # type: ignore[union-attr]
            assert [(c.old, c.new) for c in snap.changes] == [(e[1], e[2]) for e in events]
            assert len(prober.history("live")) == len(states)
            assert len(prober.history(limit=4)) == 4
        finally:
            await prober.aclose()
            await db.close()
            await server.stop()

    asyncio.run(scenario())
    assert [(old, new) for _, old, new, _ in events] == [
        ("unknown", "up"),
        ("up", "degraded"),
        ("degraded", "down"),
        ("down", "up"),
        ("up", "down"),
        ("down", "up"),
    ]
    assert all(name == "flip" for name, *_ in events)
    assert events[1][3] == "ready: http_503"
    assert events[2][3] == "live: http_500"
    assert events[4][3] == "live: connect_refused"


def test_a_running_prober_picks_a_returning_server_up_within_a_round(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = FlipServer()
        await server.start()
        prober = Prober(_target(server.url), interval_s=0.05)
        try:
            prober.start()
            await _wait_for(lambda: prober.state == "up")
            await server.stop()
            await _wait_for(lambda: prober.state == "down")
            down_at = time.monotonic()
            await server.start()
            await _wait_for(lambda: prober.state == "up")
            # No backoff: seen again within a couple of intervals.
            assert time.monotonic() - down_at < 1.5
            rounds = prober.snapshot().rounds
            await prober.stop()
            await asyncio.sleep(0.15)
            assert prober.snapshot().rounds == rounds  # stopped means stopped
        finally:
            await prober.aclose()
            await server.stop()

    asyncio.run(scenario())


def test_fixed_schedule_and_a_slow_probe_times_out() -> None:
    async def scenario() -> None:
        server = FlipServer()
        await server.start()
        target = make_target(name="slow", base_url=server.url, timeout_s=0.2, connect_timeout_s=0.2)
        try:
            async with Prober(target, interval_s=0.1) as prober:
                started = time.monotonic()
                await prober.run(count=4)
                # Rounds at 0, 0.1, 0.2, 0.3 s: a schedule, not back-to-back probes.
                assert 0.28 < time.monotonic() - started < 1.0
                assert prober.snapshot().rounds == 4
                server.delay_s["/ready"] = 1.0
                done = await prober.probe_once()
                assert done.state == "degraded"
                ready = done.result("ready")
                assert ready is not None and ready.error == "timeout" and not ready.ok
                assert 150_000 < ready.latency_us < 900_000
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_json_target_counts_any_answer_below_500() -> None:
    async def scenario() -> None:
        server = FlipServer()
        await server.start()
        target = make_target(name="api", base_url=server.url + "/v1/classify", protocol="json")
        try:
            async with Prober(target) as prober:
                server.status["/v1/classify"] = 405  # a GET on a POST-only route: it is there
                done = await prober.probe_once()
                assert [r.kind for r in done.results] == ["live"]
                assert done.state == "up" and done.results[0].status_code == 405
                server.status["/v1/classify"] = 502
                assert (await prober.probe_once()).state == "down"
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_probe_history_is_pruned_in_batches(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = FlipServer()
        await server.start()
        db: Database = await open_database(tmp_path / "p.db")
        try:
            async with Prober(_target(server.url), db=db, keep_rows=4, prune_every=6) as prober:
                counts = []
                for _ in range(5):
                    await prober.probe_once()  # 2 rows a round (live, ready)
                    await db.writer.flush()
                    counts.append(await queries.probe_count(db.reader, "flip"))
                # Pruned after rounds 3 (6 rows written) only, not after every insert.
                assert counts == [2, 4, 4, 6, 8]
                newest = [r.at_us for r in prober.snapshot().recent[-2:]]
                rows = await queries.recent_probes(db.reader, "flip", limit=100)
                assert rows[-1].at_us == newest[-1]
                assert [r.at_us for r in rows][:4] == [rows[0].at_us] * 2 + [rows[2].at_us] * 2
        finally:
            await db.close()
            await server.stop()

    asyncio.run(scenario())


def test_a_failing_listener_does_not_stop_probes() -> None:
    def listener(*_event: object) -> None:
        raise RuntimeError("listener bug")

    async def scenario() -> None:
        server = FlipServer()
        await server.start()
        try:
            async with Prober(_target(server.url), on_change=listener) as prober:
                assert (await prober.probe_once()).state == "up"
                server.status["/ready"] = 503
                assert (await prober.probe_once()).state == "degraded"
                assert prober.state == "degraded"
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_judge_needs_live_for_anything_but_down() -> None:
    assert judge(()) == ("down", "live: not probed")


def _result(kind: str, error: str | None) -> ProbeResult:
    return ProbeResult(kind, 0, None if error else 200, error is None, 1000, error)  # type: ignore[arg-type]


def test_judge_calls_a_server_that_closed_mid_round_down_not_degraded() -> None:
    """Live answered, then the listener closed and ready was refused: the server went away."""
    closing = (_result("live", None), _result("ready", "connect_refused"))
    assert judge(closing) == ("down", "ready: connect_refused")
    reset = (_result("live", None), _result("model_ready", "reset"))
    assert judge(reset)[0] == "down"
    # An answer that says "not ready", or a slow one, still means a server is there.
    assert judge((_result("live", None), _result("ready", "http_503")))[0] == "degraded"
    assert judge((_result("live", None), _result("ready", "timeout")))[0] == "degraded"


@pytest.mark.parametrize("interval", [0, -1])
def test_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        Prober(_target("http://127.0.0.1:1"), interval_s=interval)


def test_faults_are_named_and_tls_is_checked_unless_told_not_to() -> None:
    server_ctx, _ca_pem = tls_contexts()
    tls = FaultServer(ssl_context=server_ctx).start()
    plain = FaultServer().start()
    try:

        async def scenario() -> None:
            strict = make_target(name="tls", base_url=tls.url, timeout_s=1, connect_timeout_s=1)
            async with Prober(strict) as prober:
                done = await prober.probe_once()
                live = done.result("live")
                assert done.state == "down" and live is not None
                assert live.error is not None and live.error.startswith("tls")
            async with Prober(strict.model_copy(update={"verify_tls": False})) as prober:
                assert (await prober.probe_once()).state == "up"

            target = make_target(name="f", base_url=plain.url, timeout_s=0.3, connect_timeout_s=1)
            async with Prober(target) as prober:
                # A huge health body: read up to a cap, judged by its status.
                plain.add(Rule("huge", path="/ready", count=1, first=plain.requests_seen))
                assert (await prober.probe_once()).state == "up"
                plain.clear()
                # A body that drips past the deadline: a timeout, not a hang.
                plain.add(Rule("drip", path="/ready", drip_s=0.2, first=plain.requests_seen))
                started = time.monotonic()
                done = await prober.probe_once()
                assert done.state == "degraded" and time.monotonic() - started < 2.5
                assert done.result("ready").error == "timeout"  # type: ignore[union-attr]
                plain.clear()
                # Live's connection closed without an answer: down, and named.
                plain.add(Rule("close", path="/health", first=plain.requests_seen))
                done = await prober.probe_once()
                assert done.state == "down"
                live = done.result("live")
                assert live is not None and live.status_code is None
                assert live.error == "reset", live.error
                plain.clear()
                assert (await prober.probe_once()).state == "up"

        asyncio.run(scenario())
    finally:
        tls.stop()
        plain.stop()


def test_probes_go_on_when_the_database_closed_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = FlipServer()
        await server.start()
        db = await open_database(tmp_path / "p.db")
        try:
            async with Prober(_target(server.url), db=db) as prober:
                await prober.probe_once()
                await db.close()
                assert (await prober.probe_once()).state == "up"
                assert prober.db is None and prober.snapshot().rounds == 2
        finally:
            await server.stop()

    asyncio.run(scenario())
