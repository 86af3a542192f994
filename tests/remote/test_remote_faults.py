"""The load runner against a server that misbehaves on purpose (tests/fault_server.py).

For each fault, a short open-model run (constant rate, so the schedule does not bend around the
fault) and four questions: is the fault named by the right class; does the run keep going (good
answers after the fault are still ok); is every request sent kept as a row in SQLite; does memory
stay bounded. Each scenario runs in its own event loop against a real socket on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer, Rule, closed_port, tls_contexts

from engine.remote.load import LoadRunner
from engine.remote.payloads import PayloadSource
from engine.remote.plan import LoadPlan
from engine.remote.prober import Prober
from engine.remote.targets import Protocol, Target
from storage.database import open_database

PAYLOAD = {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}


@dataclass
class Outcome:
    """A load run against the fault server: its summary and its stored rows in send order."""

    summary: dict[str, Any]
    rows: list[tuple[str, str | None, int]]  # (status, error, latency_us), in intended send order

    @property
    def classes(self) -> list[str | None]:
        return [None if error is None else error.split(":")[0] for _, error, _ in self.rows]


def target_for(
    url: str, protocol: Protocol = "inferdeck", timeout_s: float = 5.0, connect_s: float = 2.0
) -> Target:
    return Target(
        name="faults",
        base_url=url,
        protocol=protocol,
        model="iris",
        timeout_s=timeout_s,
        connect_timeout_s=connect_s,
    )


def run_load(
    target: Target,
    plan: LoadPlan,
    db_path: Path,
    during: Callable[[LoadRunner], Awaitable[None]] | None = None,
) -> Outcome:
    """One run to its end (`during` runs beside it), then the run's rows as SQLite has them."""

    async def scenario() -> Outcome:
        db = await open_database(db_path)
        try:
            runner = LoadRunner(target, plan, PayloadSource.single(PAYLOAD), db=db)
            task = asyncio.create_task(runner.run())
            if during is not None:
                await during(runner)
            result = await task
            async with db.reader.execute(
                "SELECT status, error, latency_us FROM requests WHERE run_id = ? "
                "ORDER BY created_us, id",
                (result.run_id,),
            ) as cursor:
                rows = [tuple(r) for r in await cursor.fetchall()]
        finally:
            await db.close()
        return Outcome(result.summary, rows)

    return asyncio.run(scenario())


async def progress(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait for a run to get somewhere (a runner's snapshot has no event to wait on)."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 (polled, with a deadline)
            await asyncio.sleep(0.01)


def assert_all_kept(out: Outcome, expected: int | None = None) -> None:
    """Every request sent is a row, and the summary's counts add up to the rows."""
    s = out.summary
    assert len(out.rows) == s["sent"] == s["accepted"] == s["ok"] + s["failed"]
    if expected is not None:
        assert s["sent"] == expected
    assert sum(s["errors"].values()) == s["failed"]
    assert Counter(c for c in out.classes if c) == Counter(s["errors"])


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def test_refused_connections_are_counted_and_kept(db_path: Path) -> None:
    target = target_for(f"http://127.0.0.1:{closed_port()}")
    out = run_load(target, LoadPlan(rate=40, requests=20), db_path)
    assert_all_kept(out, 20)
    assert out.summary["errors"] == {"connect_refused": 20}
    assert all(status == "failed" for status, _, _ in out.rows)


def test_5xx_burst_in_the_middle_then_ok_again(server: FaultServer, db_path: Path) -> None:
    server.add(Rule("status", first=10, count=10, status=503))
    out = run_load(target_for(server.url), LoadPlan(rate=50, requests=40), db_path)
    assert_all_kept(out, 40)
    assert out.summary["errors"] == {"http_503": 10}
    assert out.classes == [None] * 10 + ["http_503"] * 10 + [None] * 20


@pytest.mark.parametrize("protocol", ["inferdeck", "oip", "json"])
def test_garbage_body_is_bad_body(server: FaultServer, db_path: Path, protocol: Protocol) -> None:
    # OIP reads the model's metadata first (one GET), so the body rules start one request later.
    first = 1 if protocol == "oip" else 0
    server.add(Rule("garbage", first=first + 5, count=5))
    out = run_load(target_for(server.url, protocol), LoadPlan(rate=50, requests=20), db_path)
    assert_all_kept(out, 20)
    assert out.summary["errors"] == {"bad_body": 5}
    assert out.classes[5:10] == ["bad_body"] * 5
    assert out.summary["ok"] == 15


def test_reset_mid_body_is_reset_and_the_run_goes_on(server: FaultServer, db_path: Path) -> None:
    server.add(Rule("reset", first=5, count=5))
    out = run_load(target_for(server.url), LoadPlan(rate=50, requests=25), db_path)
    assert_all_kept(out, 25)
    assert out.summary["errors"] == {"reset": 5}
    assert out.classes[10:] == [None] * 15


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_body_is_capped_and_memory_stays_bounded(
    server: FaultServer, db_path: Path, chunked: bool
) -> None:
    # 10 answers of 50 MB each: 500 MB if anything buffered them whole.
    server.add(Rule("huge", first=0, count=10, chunked=chunked))
    tracemalloc.start()
    try:
        out = run_load(target_for(server.url), LoadPlan(rate=20, requests=14), db_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_all_kept(out, 14)
    assert out.summary["errors"] == {"too_large": 10}
    assert out.classes[10:] == [None] * 4
    assert peak < 24 * 1024 * 1024, f"peak {peak / 2**20:.1f} MB while refusing huge bodies"


@pytest.mark.parametrize("kind", ["delay", "drip"])
def test_slow_beyond_the_timeout_is_timeout(server: FaultServer, db_path: Path, kind: str) -> None:
    # A drip sends a byte every 100 ms, so no single read ever times out: only an overall
    # deadline ends it. The deadline here is timeout + connect timeout = 0.6 s.
    server.add(Rule(kind, first=2, count=3, delay_s=5.0))  # type: ignore[arg-type]
    target = target_for(server.url, timeout_s=0.4, connect_s=0.2)
    out = run_load(target, LoadPlan(rate=20, requests=10), db_path)
    assert_all_kept(out, 10)
    assert out.summary["errors"] == {"timeout": 3}
    slow = [latency for (_, _, latency), c in zip(out.rows, out.classes, strict=True) if c]
    assert all(0.35e6 < latency < 1.5e6 for latency in slow), slow
    assert out.classes[5:] == [None] * 5


def test_a_single_stall_shows_in_p99(server: FaultServer, db_path: Path) -> None:
    # Latency counts from the intended send: every request due during a 0.5 s stall waits out
    # the rest of it, so ~a quarter of this run is slow and p99 is near the stall's length.
    server.stall(0.5, at_request=60)
    out = run_load(target_for(server.url), LoadPlan(rate=100, requests=200), db_path)
    assert_all_kept(out, 200)
    assert out.summary["failed"] == 0
    latency = out.summary["latency_ms"]
    assert latency["p50"] < 50
    assert latency["p99"] > 350, latency


def test_target_down_then_back(server: FaultServer, db_path: Path) -> None:
    async def outage(runner: LoadRunner) -> None:
        # From the run's progress, not a sleep: a slow start must not put the outage first.
        await progress(lambda: runner.snapshot().ok >= 12 and runner.snapshot().in_flight == 0)
        await asyncio.to_thread(server.go_down)
        await asyncio.sleep(0.6)
        await asyncio.to_thread(server.come_back)

    out = run_load(target_for(server.url), LoadPlan(rate=40, duration_s=2.0), db_path, outage)
    assert_all_kept(out)
    # 80 were due; one a starved loop had not sent by the end is counted, never sent late.
    assert out.summary["sent"] + out.summary["not_sent"] == 80
    errors = out.summary["errors"]
    # New connections are refused; one already open when the server went away may be reset.
    assert set(errors) <= {"connect_refused", "reset"}
    assert errors.get("connect_refused", 0) >= 10  # ~24 were due during the outage
    assert out.classes[:12] == [None] * 12
    assert out.classes[-20:] == [None] * 20


def test_stop_during_a_stall_keeps_every_request(server: FaultServer, db_path: Path) -> None:
    server.add(Rule("delay", first=10, delay_s=30.0))  # everything from request 10 hangs

    async def stop_soon(runner: LoadRunner) -> None:
        # Once ten are answered and ten more hang (a sleep here would race a slow start).
        await progress(lambda: runner.snapshot().sent >= 20)
        runner.stop()

    out = run_load(target_for(server.url), LoadPlan(rate=50, duration_s=10), db_path, stop_soon)
    assert_all_kept(out)
    assert 20 <= out.summary["sent"] <= 45  # stopped soon after the 20th
    assert out.summary["ok"] == 10
    assert out.classes[:10] == [None] * 10


def test_untrusted_certificate_is_tls(db_path: Path) -> None:
    server_ctx, _ca = tls_contexts()
    with FaultServer(ssl_context=server_ctx) as tls_server:
        out = run_load(target_for(tls_server.url), LoadPlan(rate=40, requests=8), db_path)
    assert_all_kept(out, 8)
    assert out.summary["errors"] == {"tls": 8}


def test_trusted_certificate_works(
    db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same server, with its CA handed to verification the way an operator would for a
    # private CA (SSL_CERT_FILE, honoured by the client's TLS context).
    server_ctx, ca_pem = tls_contexts()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(ca_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    with FaultServer(ssl_context=server_ctx) as tls_server:
        out = run_load(target_for(tls_server.url), LoadPlan(rate=40, requests=8), db_path)
    assert_all_kept(out, 8)
    assert out.summary["ok"] == 8, out.summary["errors"]


def run_cli_load(cli: Any, url: str, *args: str) -> Any:
    return cli("load", url, "--protocol", "inferdeck", "--model", "iris", "--json", *args)


def test_cli_load_through_a_burst_keeps_every_row(
    cli: Any, server: FaultServer, db_path: Path
) -> None:
    # Request 0 is the command's preflight, so the burst hits the run's requests 10..19.
    server.add(Rule("status", first=11, count=10, status=502))
    result = run_cli_load(cli, server.url, "--rate", "50", "--requests", "30")
    assert result.code == 1, result.stderr
    summary = result.summary
    assert summary["errors"] == {"http_502": 10}
    assert (summary["ok"], summary["failed"]) == (20, 10)
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM requests WHERE run_id = ? AND source = 'load' "
            "GROUP BY status",
            (summary["run_id"],),
        ).fetchall()
    assert dict(rows) == {"ok": 20, "failed": 10}


def test_cli_load_refused_target_exits_2_in_one_line(cli: Any) -> None:
    result = run_cli_load(cli, f"http://127.0.0.1:{closed_port()}", "--rate", "10")
    assert result.code == 2
    assert "connect_refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_prober_picks_up_a_target_that_comes_back(server: FaultServer, db_path: Path) -> None:
    changes: list[tuple[str, str, str]] = []

    async def until(prober: Prober, state: str) -> None:
        deadline = time.monotonic() + 5
        while prober.state != state:
            assert time.monotonic() < deadline, f"still {prober.state}, waiting for {state}"
            await asyncio.sleep(0.02)

    async def scenario() -> int:
        db = await open_database(db_path)
        target = target_for(server.url, timeout_s=0.5, connect_s=0.3)
        prober = Prober(
            target,
            interval_s=0.1,
            db=db,
            on_change=lambda _name, old, new, detail: changes.append((old, new, detail)),
        )
        try:
            prober.start()
            await until(prober, "up")
            await asyncio.to_thread(server.go_down)
            await until(prober, "down")
            await asyncio.to_thread(server.come_back)
            await until(prober, "up")
            server.add(Rule("status", path="/ready", status=503))  # alive, not ready
            await until(prober, "degraded")
            server.clear()
            await until(prober, "up")
            rounds = prober.snapshot().rounds
        finally:
            await prober.aclose()
            await db.writer.flush()
            async with db.reader.execute(
                "SELECT count(*) FROM probes WHERE target = ?", (target.name,)
            ) as cursor:
                (stored,) = await cursor.fetchone()  # type: ignore[misc]
            await db.close()
        assert stored >= rounds * 2  # every probe of every round is kept
        return rounds

    rounds = asyncio.run(scenario())
    assert [(old, new) for old, new, _ in changes] == [
        ("unknown", "up"),
        ("up", "down"),
        ("down", "up"),
        ("up", "degraded"),
        ("degraded", "up"),
    ]
    assert "refused" in changes[1][2]
    assert "503" in changes[3][2]
    assert rounds >= 5
