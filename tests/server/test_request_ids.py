"""Caller-chosen request IDs, out-of-range numbers and readiness, through the real service.

Every answer of 200 must be the one row stored under its ID, with its own output, however
requests with one ID race (in one server, or in two servers on one database file, as
`serve --workers 2` runs); a value the store cannot hold is a per-field rejection, and never
leaves its ID unusable; `/ready` says whether a request could be stored now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO
from engine_sink import ListSink
from live_server import BODY, ROW, LiveServer, free_port

from engine.contracts import PredictRequest
from engine.models import ModelRegistry
from engine.pipeline import Engine, EngineConfig, Origin
from engine.runs import begin_run
from engine.server import ServerSettings
from engine.tiers import ClientDirectory
from engine.work import Work
from storage import open_database
from storage.queries import REQUEST_COLUMNS, UPSERT_REQUEST, requests_not_stored
from storage.writer import RowsRefusedError

# Two inputs with different answers, so an answer can be told from the other's stored row.
SETOSA = ROW
VIRGINICA = {"sepal_length": 7.7, "sepal_width": 2.6, "petal_length": 6.9, "petal_width": 2.3}
PAIRS = 150


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two services, each with its own engine and in-memory IDs, on one database file."""
    db = tmp_path / "shared.db"
    first = LiveServer(ServerSettings(db_path=db))
    second = LiveServer(ServerSettings(db_path=db))
    first.start()
    second.start()
    yield first, second
    first.stop()
    second.stop()


def stored_rows(db: Path, ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = {i: [] for i in ids}
    with sqlite3.connect(db) as conn:
        for request_id, status, output, input_text in conn.execute(
            "SELECT request_id, status, output, input FROM requests WHERE request_id IN "
            f"({', '.join('?' for _ in ids)})",
            ids,
        ):
            found[request_id].append((status, output, input_text))
    return found


async def race(
    urls: tuple[str, str], bodies: tuple[dict[str, Any], dict[str, Any]], prefix: str
) -> list[tuple[str, list[httpx.Response]]]:
    """`PAIRS` pairs of requests sent at once, each pair under one X-Request-ID."""
    limits = httpx.Limits(max_connections=400)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def pair(i: int) -> tuple[str, list[httpx.Response]]:
            request_id = f"{prefix}-{i}"
            sent = [
                client.post(f"{url}/predict", json=body, headers={"X-Request-ID": request_id})
                for url, body in zip(urls, bodies, strict=True)
            ]
            return request_id, list(await asyncio.gather(*sent))

        return list(await asyncio.gather(*(pair(i) for i in range(PAIRS))))


def check_one_winner_per_id(db: Path, pairs: list[tuple[str, list[httpx.Response]]]) -> None:
    rows = stored_rows(db, [request_id for request_id, _ in pairs])
    for request_id, answers in pairs:
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409], (request_id, [a.text for a in answers])
        won = next(a for a in answers if a.status_code == 200)
        lost = next(a for a in answers if a.status_code == 409)
        assert won.json()["request_id"] == request_id
        assert lost.json()["error"]["code"] == "duplicate_request_id"
        assert lost.json()["error"]["request_id"] != request_id  # its row has an ID of its own
        # Exactly one row holds the ID: the acknowledged request's, with its own answer.
        ((status, output, input_text),) = rows[request_id]
        assert status == "ok"
        assert json.loads(output) == won.json()["outputs"]
        sent = json.loads(won.request.content)["input_payload"]
        assert json.loads(input_text) == sent


def test_concurrent_requests_with_one_id_have_one_winner(tmp_path: Path) -> None:
    server = LiveServer(ServerSettings(db_path=tmp_path / "one.db"))
    server.start()
    try:
        bodies = ({**BODY, "input_payload": SETOSA}, {**BODY, "input_payload": VIRGINICA})
        pairs = asyncio.run(race((server.url, server.url), bodies, "same"))
    finally:
        server.stop()
    check_one_winner_per_id(tmp_path / "one.db", pairs)


def test_two_servers_on_one_database_never_both_acknowledge_an_id(
    two_servers: tuple[LiveServer, LiveServer], tmp_path: Path
) -> None:
    first, second = two_servers
    bodies = ({**BODY, "input_payload": SETOSA}, {**BODY, "input_payload": VIRGINICA})
    pairs = asyncio.run(race((first.url, second.url), bodies, "two"))
    check_one_winner_per_id(tmp_path / "shared.db", pairs)


@pytest.mark.slow
def test_serve_with_two_workers_acknowledges_each_id_once(tmp_path: Path) -> None:
    """The real `inferdeck serve --workers 2`: the kernel spreads the connections over both
    worker processes, so many pairs reach two engines that cannot see each other's IDs."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "workers.db"
    env = {**os.environ, "INFERDECK_DB": str(db), "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ready(url, proc)
        deadline = time.monotonic() + 90
        workers = 0
        while workers < 2:  # both workers have started their serve run, so both answer
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.2)
            with sqlite3.connect(db) as conn:
                workers = conn.execute(
                    "SELECT count(*) FROM runs WHERE kind = 'serve' AND status = 'running'"
                ).fetchone()[0]
        wait_until_ready(url, proc)
        bodies = ({**BODY, "input_payload": SETOSA}, {**BODY, "input_payload": VIRGINICA})
        pairs = asyncio.run(race((url, url), bodies, "workers"))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    check_one_winner_per_id(db, pairs)


@pytest.mark.parametrize("across", [False, True], ids=["one server", "two servers"])
def test_a_rejection_racing_an_accepted_request_never_replaces_it(
    two_servers: tuple[LiveServer, LiveServer], tmp_path: Path, across: bool
) -> None:
    first, second = two_servers
    invalid = {**BODY, "input_payload": {**SETOSA, "petal_width": -5}}
    urls = (first.url, second.url if across else first.url)
    pairs = asyncio.run(race(urls, ({**BODY, "input_payload": VIRGINICA}, invalid), "mixed"))
    rows = stored_rows(tmp_path / "shared.db", [request_id for request_id, _ in pairs])
    for request_id, (valid, refused) in pairs:
        assert refused.status_code == 422
        assert refused.json()["error"]["details"][0]["field"] == "input_payload.petal_width"
        # A rejection takes no ID from anyone: the accepted request always gets it.
        assert valid.status_code == 200, valid.text
        ((status, output, _),) = rows[request_id]
        assert (status, json.loads(output)) == ("ok", valid.json()["outputs"])


def test_an_integer_beyond_64_bits_is_a_field_error_and_the_id_stays_usable(
    tmp_path: Path,
) -> None:
    server = LiveServer(ServerSettings(db_path=tmp_path / "big.db"))
    server.start()
    try:
        headers = {"X-Request-ID": "big-1"}
        big = {**BODY, "metadata": {"batch": 2**64, "note": "x"}}
        refused = httpx.post(f"{server.url}/predict", json=big, headers=headers)
        fixed = httpx.post(
            f"{server.url}/predict",
            json={**BODY, "metadata": {"batch": 2**63 - 1}},
            headers=headers,
        )
        again = httpx.post(f"{server.url}/predict", json=BODY, headers=headers)
        negative = httpx.post(
            f"{server.url}/predict", json={**BODY, "metadata": {"n": -(2**63) - 1}}
        )
    finally:
        server.stop()
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["details"][0]["field"] == "metadata.batch"
    assert "64 bits" in error["message"]
    # The refused request did not take the ID: sent again with the mistake fixed, it runs.
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["request_id"] == "big-1"
    assert again.status_code == 409  # and once acknowledged, the ID is taken for good
    assert negative.status_code == 422
    assert negative.json()["error"]["details"][0]["field"] == "metadata.n"
    with sqlite3.connect(tmp_path / "big.db") as conn:
        stored = conn.execute(
            "SELECT status, metadata FROM requests WHERE request_id = 'big-1'"
        ).fetchall()
    assert stored == [("ok", '{"batch":9223372036854775807}')]


def test_a_request_that_fails_before_it_is_stored_frees_its_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_lookup = ClientDirectory.lookup
    calls = 0

    async def failing_once(self: ClientDirectory, client_id: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the metadata read failed")
        return await real_lookup(self, client_id)

    monkeypatch.setattr(ClientDirectory, "lookup", failing_once)
    server = LiveServer(ServerSettings(db_path=tmp_path / "fail.db"))
    server.start()
    try:
        body = {**BODY, "client_id": "first-time-client"}
        headers = {"X-Request-ID": "retry-me"}
        failed = httpx.post(f"{server.url}/predict", json=body, headers=headers)
        retried = httpx.post(f"{server.url}/predict", json=body, headers=headers)
    finally:
        server.stop()
    assert failed.status_code == 500
    assert retried.status_code == 200, retried.text  # not "409: already used"
    assert retried.json()["request_id"] == "retry-me"


def test_predict_rejects_the_big_integer_row_and_runs_the_rest(cli: Any, tmp_path: Path) -> None:
    rows = [
        {**BODY, "request_id": "row-1"},
        {**BODY, "request_id": "row-2", "metadata": {"n": 123456789012345678901234567890}},
        {**BODY, "request_id": "row-3"},
        {**BODY, "request_id": "row-4", "metadata": {"n": 9223372036854775807}},
    ]
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = cli("predict", source, "--json")
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr and "stopped" not in result.stderr
    assert "line 2 field 'metadata.n'" in result.stderr
    summary = result.summary
    assert (summary["accepted"], summary["ok"], summary["rejected"]) == (4, 3, 1)
    with sqlite3.connect(tmp_path / "inferdeck.db") as conn:
        stored = conn.execute(
            "SELECT source_row, request_id, status FROM requests ORDER BY source_row"
        ).fetchall()
    assert [(r[0], r[2]) for r in stored] == [(1, "ok"), (2, "rejected"), (3, "ok"), (4, "ok")]
    assert [r[1] for r in stored if r[2] == "ok"] == ["row-1", "row-3", "row-4"]


def test_the_store_declines_a_row_over_another_process_s_request(tmp_path: Path) -> None:
    """Two connections to one file, as two processes have: the second request for an ID is
    declined and told so; the first one's row stays as it was."""

    def row(run_id: str, status: str, created_us: int, output: str | None) -> tuple[Any, ...]:
        values = dict.fromkeys(REQUEST_COLUMNS)
        values.update(
            request_id="shared",
            run_id=run_id,
            source="http",
            target="local",
            status=status,
            created_us=created_us,
            output=output,
        )
        return tuple(values[c] for c in REQUEST_COLUMNS)

    def built(values: tuple[Any, ...]) -> Callable[[int], list[Sequence[Any]]]:
        return lambda _start_ns: [values]

    async def scenario() -> list[BaseException | None]:
        one = await open_database(tmp_path / "two.db")
        other = await open_database(tmp_path / "two.db")
        heard: list[BaseException | None] = []
        try:
            await one.writer.execute(UPSERT_REQUEST, row("run-a", "queued", 1, None))
            for db, values in (
                (other, row("run-b", "ok", 2, "b")),  # another request: declined
                (one, row("run-a", "ok", 1, "a")),  # the queued request's result: stored
                (other, row("run-b", "rejected", 2, None)),  # a rejection: declined
            ):
                db.writer.add_deferred(
                    UPSERT_REQUEST, 1, built(values), heard.append, check=requests_not_stored
                )
                await db.writer.flush()
        finally:
            await one.close()
            await other.close()
        return heard

    heard = asyncio.run(scenario())
    assert [type(h) for h in heard] == [RowsRefusedError, type(None), RowsRefusedError]
    assert isinstance(heard[0], RowsRefusedError) and heard[0].rows == frozenset({0})
    with sqlite3.connect(tmp_path / "two.db") as conn:
        stored = conn.execute("SELECT run_id, status, output FROM requests").fetchall()
    assert stored == [("run-a", "ok", "a")]


def test_ready_says_not_ready_while_writes_fail_and_recovers(tmp_path: Path) -> None:
    """A real `inferdeck serve` whose files cannot grow (RLIMIT_FSIZE, as on a full disk)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "INFERDECK_DB": str(tmp_path / "full.db"),
        "XDG_STATE_HOME": str(tmp_path / "state"),  # its logs stay in the test's folder
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_until_ready(url, proc)
        assert httpx.post(f"{url}/predict", json=BODY).status_code == 200
        limits = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, limits[1]))  # no write can land
        lost = httpx.post(f"{url}/predict", json=BODY)
        assert lost.status_code == 500
        full = httpx.get(f"{url}/ready")
        assert full.status_code == 503
        message = full.json()["error"]["message"]
        assert message.startswith("the database cannot store requests: "), message
        assert httpx.get(f"{url}/ready").status_code == 503  # still, with no request between
        assert httpx.get(f"{url}/v2/health/ready").status_code == 503  # OIP's readiness too

        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, limits)  # space again
        back = httpx.get(f"{url}/ready")
        assert back.status_code == 200, back.text  # found by a probe write, no request needed
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        stored = httpx.post(f"{url}/predict", json=BODY)
        assert stored.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    with sqlite3.connect(tmp_path / "full.db") as conn:
        ids = [r[0] for r in conn.execute("SELECT request_id FROM requests")]
    assert stored.json()["request_id"] in ids and lost.json()["error"]["request_id"] not in ids
    assert not any(i.startswith("probe-") for i in ids)  # probes leave nothing behind


def wait_until_ready(url: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "inferdeck serve exited"
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("inferdeck serve did not become ready")


class GateExecutor(ThreadPoolExecutor):
    """Inference waits until `gate` is set: a model busy for as long as the test needs."""

    def __init__(self) -> None:
        super().__init__(2)
        self.gate = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if getattr(fn, "__name__", "") not in ("predict_batch", "_predict_outputs"):
            return super().submit(fn, *args, **kwargs)

        def gated() -> Any:
            self.gate.wait(60)
            return fn(*args, **kwargs)

        return super().submit(gated)


def test_a_request_cancelled_while_the_queue_is_full_frees_its_id(tmp_path: Path) -> None:
    """A file job stopped (Cancel, Ctrl+C) while its next row waits for queue space must not
    keep that row's ID: the long-lived engine of the app would refuse it for good."""
    config = EngineConfig(queue_capacity=1, max_inflight_batches=1, max_batch=1)
    executor = GateExecutor()

    def request(request_id: str) -> PredictRequest:
        return PredictRequest.model_validate({**BODY, "request_id": request_id})

    async def scenario() -> tuple[str, str]:
        db = await open_database(tmp_path / "engine.db")
        engine = Engine(db, ModelRegistry.discover(), executor, config)
        await engine.start()
        try:
            run = await begin_run(db, "test", {})
            origin = Origin(run, ListSink(), "test")
            ids = engine._caller_ids  # an ID is held by its Work once accepted

            async def until(done: Callable[[], bool]) -> None:
                async with asyncio.timeout(30):
                    while not done():  # noqa: ASYNC110 (no event to wait on)
                        await asyncio.sleep(0.01)

            # One at a time, so that the request waiting for space is "again" (started at
            # once, a woken "queued" could lose its place to "again" and wait in its stead).
            running = asyncio.ensure_future(engine.predict(request("busy"), origin))
            await until(lambda: isinstance(ids.get("busy"), Work) and len(engine.queue) == 0)
            queued = asyncio.ensure_future(engine.predict(request("queued"), origin))
            await until(lambda: isinstance(ids.get("queued"), Work) and len(engine.queue) == 1)
            waiting = asyncio.ensure_future(engine.predict(request("again"), origin))
            await until(
                lambda: isinstance(ids.get("again"), Work) and bool(engine.queue._space_waiters)
            )
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            executor.gate.set()
            await asyncio.gather(running, queued)
            retried = await engine.predict(request("again"), origin)
            return retried.status, retried.request_id
        finally:
            executor.gate.set()
            await engine.stop()
            await db.close()
            executor.shutdown()

    assert asyncio.run(scenario()) == ("ok", "again")
