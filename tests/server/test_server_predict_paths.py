"""`POST /predict` has two ways in: the edge layer's fast path (what uvicorn serves) and the
FastAPI route (the edge with its fast path off). Both must answer every case the same way."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import BODY, ROW, LiveServer

from engine.server import ServerSettings
from engine.server.app import create_app
from engine.server.edge import Edge


@pytest.fixture
def both(tmp_path: Path) -> Iterator[dict[str, LiveServer]]:
    def settings(name: str) -> ServerSettings:
        return ServerSettings(db_path=tmp_path / f"{name}.db", max_body_bytes=2048)

    route = settings("route")
    servers = {
        "edge": LiveServer(settings("edge")),
        "route": LiveServer(route, app=Edge(create_app(route), route.max_body_bytes)),
    }
    for live in servers.values():
        live.start()
    yield servers
    for live in servers.values():
        live.stop()


CASES: list[tuple[str, dict[str, Any]]] = [
    ("ok", {"json": BODY}),
    ("bad field", {"json": {**BODY, "input_payload": {**ROW, "petal_width": "x"}}}),
    ("unknown model", {"json": {**BODY, "model": "nope"}}),
    ("not json", {"content": b"{oops", "headers": {"content-type": "application/json"}}),
    ("chunked, too large", {"content": iter([b"{" + b" " * 4096 + b"}"])}),
]


def _shape(response: httpx.Response) -> tuple[Any, ...]:
    body = response.json()
    if "error" in body:
        error = body["error"]
        return (response.status_code, "error", error["code"], bool(error["request_id"]))
    return (
        response.status_code,
        sorted(body),
        body["outputs"]["label"],
        [s["name"] for s in body["spans"]],
        "inference;dur=" in response.headers["server-timing"],
    )


@pytest.mark.parametrize(("case", "send"), CASES, ids=[c for c, _ in CASES])
def test_fast_path_and_route_answer_alike(
    both: dict[str, LiveServer], case: str, send: dict[str, Any]
) -> None:
    answers = {}
    for name, served in both.items():
        kwargs = dict(send)
        if "content" in kwargs and not isinstance(kwargs["content"], bytes):
            kwargs["content"] = iter([b"{" + b" " * 4096 + b"}"])  # a fresh generator each time
        answers[name] = httpx.post(f"{served.url}/predict", **kwargs)
    edge, route = answers["edge"], answers["route"]
    assert _shape(edge) == _shape(route), case
    assert edge.headers["x-request-id"]  # the edge layer always adds its ID
    if edge.status_code == 200:
        assert edge.json()["request_id"] == edge.headers["x-request-id"]


def test_fast_path_rows_match_route_rows(both: dict[str, LiveServer], tmp_path: Path) -> None:
    for served in both.values():
        assert httpx.post(f"{served.url}/predict", json=BODY).status_code == 200
        unknown = httpx.post(f"{served.url}/predict", json={**BODY, "model": "nope"})
        assert unknown.status_code == 404
    rows = {}
    for name in both:
        with sqlite3.connect(tmp_path / f"{name}.db") as conn:
            rows[name] = conn.execute(
                "SELECT status, model, client_id, source FROM requests ORDER BY created_us"
            ).fetchall()
    assert rows["edge"] == rows["route"]
    assert [r[0] for r in rows["edge"]] == ["ok", "rejected"]


def test_a_rejection_never_replaces_the_request_holding_its_id(
    both: dict[str, LiveServer], tmp_path: Path
) -> None:
    url = both["edge"].url
    first = httpx.post(f"{url}/predict", json=BODY, headers={"X-Request-ID": "dup-1"})
    bad = {**BODY, "input_payload": {**ROW, "sepal_width": "wide"}}
    again = httpx.post(f"{url}/predict", json=bad, headers={"X-Request-ID": "dup-1"})
    assert (first.status_code, again.status_code) == (200, 422)
    with sqlite3.connect(tmp_path / "edge.db") as conn:
        rows = conn.execute(
            "SELECT request_id, status FROM requests ORDER BY created_us"
        ).fetchall()
    assert rows[0] == ("dup-1", "ok")  # the first request's row is intact
    assert rows[1][0] != "dup-1" and rows[1][1] == "rejected"  # the rejection has its own ID
