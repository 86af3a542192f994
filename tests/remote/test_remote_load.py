"""The load runner against real servers on 127.0.0.1 and a real SQLite file.

`TinyServer` is a small HTTP/1.1 server on its own loop in a thread: a fixed delay, an optional
one-off stall of the whole server, and paths that misbehave on purpose. The join of client and
server spans runs against a real `inferdeck serve` app (test_server's `LiveServer`).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from live_server import ROW, ServeProcess, free_port
from tiny_server import TinyServer, target

from engine.remote.classify import classify
from engine.remote.examples import example_from_oip, example_from_schema
from engine.remote.load import LoadResult, LoadRunner
from engine.remote.payloads import PayloadSource
from engine.remote.plan import LoadPlan
from engine.remote.protocols import OipInput
from engine.remote.server_timing import parse_server_timing, place_server_spans
from storage.database import open_database

OK_BODY = b'{"outputs":{"label":"a"}}'  # what _Serve answers
TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def load(
    url: str, plan: LoadPlan, db: Any = None, payload: dict[str, Any] | None = None, **kw: Any
) -> LoadResult:
    async def main() -> LoadResult:
        runner = LoadRunner(
            target(url, **kw.pop("target", {})),
            plan,
            PayloadSource.single(payload or {"x": 1}),
            db=db,
            **kw,
        )
        return await runner.run()

    return asyncio.run(main())


def load_with_db(path: Path, url: str, plan: LoadPlan, **kw: Any) -> LoadResult:
    async def main() -> LoadResult:
        db = await open_database(path)
        try:
            runner = LoadRunner(
                target(url, **kw.pop("target", {})),
                plan,
                PayloadSource.single(kw.pop("payload", {"x": 1})),
                db=db,
                **kw,
            )
            return await runner.run()
        finally:
            await db.close()

    return asyncio.run(main())


def rows(path: Path, run_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in conn.execute("SELECT * FROM requests WHERE run_id = ? ORDER BY id", (run_id,))
        ]


# -- fidelity ----------------------------------------------------------------------------------


def test_fixed_delay_at_constant_rate_reports_the_delay_as_p50() -> None:
    with TinyServer(delay_s=0.020) as server:
        result = load(server.url, LoadPlan(rate=100, duration_s=2.0))
        served = server.count
    summary = result.summary
    assert summary["accepted"] == summary["ok"] == 200 == served
    # The ±5 % fidelity figure is measured by bench/bench_load.py; on a shared, noisy machine a
    # test can only check that no request is reported faster than the server answers and that
    # the client adds little on top.
    assert 19.5 <= summary["latency_ms"]["p50"] <= 26.0, summary["latency_ms"]


def test_a_one_second_stall_shows_in_p99() -> None:
    """Open model: requests meant to leave during the stall count from their intended time."""
    with TinyServer(delay_s=0.002, stall_at=60, stall_s=1.0) as server:
        result = load(server.url, LoadPlan(rate=100, duration_s=3.0))
    lat = result.summary["latency_ms"]
    assert result.summary["ok"] == 300
    assert lat["max"] >= 1000, lat
    assert lat["p99"] >= 950, lat
    # ... while the bulk of the run is unaffected.
    assert lat["p50"] < 50, lat


def test_in_flight_cap_waits_in_a_queue_span_and_still_counts(tmp_path: Path) -> None:
    db = tmp_path / "load.db"
    with TinyServer(delay_s=0.020) as server:
        result = load_with_db(db, server.url, LoadPlan(rate=200, requests=20, max_in_flight=1))
    stored = rows(db, result.run_id)
    assert len(stored) == 20
    last = orjson.loads(stored[-1]["spans"])
    queue = next(s for s in last if s[0] == "queue")
    # 20 requests one at a time take ≥ 400 ms, while the last was meant to leave at 95 ms.
    assert queue[2] >= 250_000
    assert stored[-1]["latency_us"] >= 300_000
    assert result.summary["latency_ms"]["max"] >= 300


# -- counts, rows, headers ---------------------------------------------------------------------


def test_closed_model_sends_exactly_the_requests_asked_and_stores_each(tmp_path: Path) -> None:
    db = tmp_path / "load.db"
    with TinyServer() as server:
        result = load_with_db(
            db,
            server.url,
            LoadPlan(concurrency=4, requests=37),
            token="s3cret",
            target={"headers": {"X-Team": "ml"}},
        )
        count, seen = server.stats()
        assert count == 37
    summary = result.summary
    assert (summary["accepted"], summary["ok"], summary["failed"]) == (37, 37, 0)
    assert summary["errors"] == {}
    assert seen["authorization"] == "Bearer s3cret" and seen["x-team"] == "ml"
    assert TRACEPARENT.match(seen["traceparent"])
    stored = rows(db, result.run_id)
    assert len(stored) == 37
    assert len({r["request_id"] for r in stored}) == 37
    first = stored[0]
    assert (first["source"], first["target"], first["client_id"], first["status"]) == (
        "load",
        "t",
        "load",
        "ok",
    )
    assert first["finished_us"] - first["created_us"] == pytest.approx(first["latency_us"], abs=2)
    meta = orjson.loads(first["metadata"])
    assert meta["server_request_id"] + ".client" == first["request_id"]
    assert orjson.loads(first["output"]) == orjson.loads(OK_BODY)
    assert orjson.loads(first["input"]) == {"x": 1}
    names = [s[0] for s in orjson.loads(first["spans"])]
    assert "server.parse" in names and "server.infer" in names and "receive" in names
    with sqlite3.connect(db) as conn:
        run = conn.execute(
            "SELECT kind, status, summary, histogram FROM runs WHERE run_id = ?", (result.run_id,)
        ).fetchone()
    assert run[:2] == ("load", "done")
    assert orjson.loads(run[2])["ok"] == 37 and run[3]
    # The token never reaches the run's stored config.
    with sqlite3.connect(db) as conn:
        assert "s3cret" not in conn.execute("SELECT config FROM runs").fetchone()[0]


def test_stop_ends_the_run_early_and_keeps_what_was_recorded(tmp_path: Path) -> None:
    db_file = tmp_path / "load.db"

    async def main() -> tuple[LoadResult, Any]:
        db = await open_database(db_file)
        runner = LoadRunner(
            target(server.url), LoadPlan(rate=200, duration_s=60), PayloadSource.single({}), db=db
        )
        task = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 20
        while runner.snapshot().completed < 20:
            assert time.monotonic() < deadline, "no progress"
            await asyncio.sleep(0.01)
        runner.stop()
        result = await asyncio.wait_for(task, 10)
        snap = runner.snapshot()
        await db.close()
        return result, snap

    with TinyServer(delay_s=0.005) as server:
        result, snap = asyncio.run(main())
    assert snap.done and snap.in_flight == 0
    assert snap.completed == snap.sent == result.summary["accepted"] >= 20
    assert snap.ok == result.summary["ok"] and snap.throughput_per_s > 0 and snap.p50_ms > 0
    assert result.summary["duration_s"] < 30
    assert len(rows(db_file, result.run_id)) == result.summary["accepted"]


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing", "http_404"),
        ("/unavailable", "http_503"),
        ("/garbage", "bad_body"),
        ("/huge", "too_large"),
        ("/slow", "timeout"),
    ],
)
def test_failures_are_classified(tmp_path: Path, path: str, expected: str) -> None:
    db = tmp_path / "load.db"
    with TinyServer() as server:
        result = load_with_db(
            db,
            server.url + path,
            LoadPlan(concurrency=2, requests=2),
            target={"timeout_s": 0.3, "connect_timeout_s": 0.3},
        )
    assert result.summary["errors"] == {expected: 2}
    assert (result.summary["ok"], result.summary["failed"]) == (0, 2)
    stored = rows(db, result.run_id)
    assert [r["status"] for r in stored] == ["failed", "failed"]
    assert all(r["error"].startswith(expected + ": ") for r in stored)


def test_a_refused_port_is_connect_refused() -> None:
    port = free_port()  # nothing listens there
    result = load(f"http://127.0.0.1:{port}", LoadPlan(concurrency=1, requests=3))
    assert result.summary["errors"] == {"connect_refused": 3}


def test_classify_sees_through_the_transport_wrapper() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError as inner:
            raise httpx.ConnectTimeout("wrapped") from inner
    except httpx.ConnectTimeout as exc:
        assert classify(exc) == "connect_refused"
    assert classify(httpx.ConnectTimeout("slow")) == "connect_timeout"
    assert classify(httpx.RemoteProtocolError("closed")) == "reset"
    assert classify(ValueError("odd")) == "other"


def test_server_timing_parses_durations() -> None:
    header = 'validate;dur=0.012, cache;desc="hit", inference;dur=1.5;desc=x, bad;dur=nan'
    assert parse_server_timing(header) == (
        ("validate", 12),
        ("cache", 0),
        ("inference", 1500),
        ("bad", 0),
    )
    assert parse_server_timing(None) == ()


# -- a real inferdeck serve ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    folder = tmp_path_factory.mktemp("serve")
    live = ServeProcess(folder / "serve.log", db=folder / "serve.db")
    yield live
    live.stop()


def test_rows_join_client_and_server_spans_of_inferdeck_serve(
    served: ServeProcess, tmp_path: Path
) -> None:
    live, serve_db = served, served.db
    db = tmp_path / "load.db"
    result = load_with_db(
        db,
        live.url,
        LoadPlan(concurrency=2, requests=12),
        payload=ROW,
        trace_every=1,  # every request reports its phases
        target={"protocol": "inferdeck", "model": "iris"},
    )
    assert result.summary["ok"] == 12, result.summary
    stored = rows(db, result.run_id)
    with sqlite3.connect(serve_db) as conn:
        server_ids = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
    for row in stored:
        meta = orjson.loads(row["metadata"])
        assert meta["server_request_id"] + ".client" == row["request_id"]
        assert meta["server_request_id"] in server_ids  # the server stored it under our ID
        spans = orjson.loads(row["spans"])
        names = [s[0] for s in spans]
        for name in ("send", "wait", "receive", "server.inference", "server.write"):
            assert name in names, names
        wait = next(s for s in spans if s[0] == "wait")
        inference = next(s for s in spans if s[0] == "server.inference")
        assert wait[1] <= inference[1] and inference[1] + inference[2] <= wait[1] + wait[2]
        assert orjson.loads(row["output"])["outputs"]["label"] == "setosa"
    # A fresh connection reports connect; the two users open two.
    assert sum("connect" in [s[0] for s in orjson.loads(r["spans"])] for r in stored) >= 1


def test_oip_inputs_come_from_the_model_metadata(served: ServeProcess) -> None:
    live = served
    result = load(
        live.url,
        LoadPlan(concurrency=1, requests=3),
        payload=ROW,
        target={"protocol": "oip", "model": "iris"},
    )
    assert result.summary["ok"] == 3, result.summary


def test_replayed_history_sends_stored_inputs(served: ServeProcess) -> None:
    live, serve_db = served, served.db

    async def main() -> LoadResult:
        db = await open_database(serve_db)  # the server's own history, read while it runs
        try:
            source = await PayloadSource.from_history(db, "iris", limit=5)
            assert source.payloads and all(set(p) == set(ROW) for p in source.payloads)
        finally:
            await db.close()
        runner = LoadRunner(
            target(live.url, protocol="inferdeck", model="iris"),
            LoadPlan(concurrency=1, requests=len(source)),
            source,
            db=None,
        )
        return await runner.run()

    assert asyncio.run(main()).summary["ok"] >= 1


@pytest.mark.parametrize("protocol", ["inferdeck", "oip"])
def test_without_a_payload_an_example_from_the_models_schema_is_accepted(
    served: ServeProcess, protocol: str
) -> None:
    sent: list[dict[str, object]] = []

    async def main() -> LoadResult:
        runner = LoadRunner(
            target(served.url, protocol=protocol, model="iris"),
            LoadPlan(concurrency=2, requests=10),
            PayloadSource.model_example(),
            db=None,
        )
        result = await runner.run()
        sent.extend(runner.payloads.payloads)
        return result

    summary = asyncio.run(main()).summary
    assert (summary["ok"], summary["errors"]) == (10, {}), summary
    if protocol == "inferdeck":
        # This project's service offers the model's own example (a held-out row): that is
        # what is sent, not a value made up from the middle of each field's range.
        offered = httpx.get(f"{served.url}/models/iris", timeout=30).json()["example"]
        assert offered and sent == [offered]


def test_examples_fill_ranges_and_tensor_shapes() -> None:
    schema = {
        "properties": {
            "a": {"type": "number", "minimum": 2, "maximum": 4},
            "n": {"type": "integer", "minimum": 3},
            "flag": {"type": "boolean"},
            "pixels": {"type": "array", "items": {"type": "number"}, "minItems": 3},
        }
    }
    assert example_from_schema(schema) == {"a": 3.0, "n": 3, "flag": False, "pixels": [1.0] * 3}
    image = [OipInput("image", "FP32", (-1, 8, 8))]
    assert example_from_oip(image) == {"image": [1.0] * 64}
    fields = [OipInput("x", "INT64", (-1, 1)), OipInput("all", "FP32", (-1, 2))]
    assert example_from_oip(fields) == {"x": 1}


def test_server_spans_sit_inside_the_wait_they_took() -> None:
    timing = (("inference", 300), ("write", 100))
    centred = place_server_spans(timing, wait_start_us=1_000, wait_us=600)
    assert [(s[0], s[1], s[2]) for s in centred] == [
        ("server.inference", 1_100, 300),
        ("server.write", 1_400, 100),
    ]
    # More server time than the client's wait: the server began during the send, and it ends
    # no later than the answer's first byte.
    late = place_server_spans(timing, wait_start_us=1_000, wait_us=350)
    assert late[-1][1] + late[-1][2] == 1_350 and late[0][1] == 950
