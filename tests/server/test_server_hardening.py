"""`inferdeck serve` under attack: oversized batches, hostile tensors, slow and endless
connections, and start-up failures, each through a real uvicorn server or the real CLI."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from live_server import BODY, LiveServer, ServeProcess, free_port

from engine.server import ServerSettings, asgi_app

SETOSA = [5.1, 3.5, 1.4, 0.2]
QUEUE = 512  # ServerSettings' default queue capacity: the largest batch one request may carry


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path_factory.mktemp("hard") / "s.db"))
    live.start()
    yield live
    live.stop()


def combined(rows: int) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [rows, 4], "data": SETOSA * rows}]
    }


def stored(db: Path, prefix: str) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(
            conn.execute(
                "SELECT status, count(*) FROM requests WHERE request_id LIKE ? GROUP BY status",
                (f"{prefix}%",),
            ).fetchall()
        )


@pytest.mark.parametrize("rows", [600, 2000])
def test_a_batch_larger_than_the_queue_is_refused_whole_and_the_limit_advertised(
    server: LiveServer, rows: int
) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        meta = client.get("/v2/models/iris").json()
        assert meta["parameters"] == {"max_batch_size": QUEUE}
        tag = f"big-{rows}"
        for attempt in range(2):  # the same answer every time: nothing ran the first time
            refused = client.post(
                "/v2/models/iris/infer",
                json=combined(rows),
                headers={"X-Request-ID": f"{tag}-{attempt}"},
            )
            assert refused.status_code == 400, refused.text
            assert "retry-after" not in refused.headers
            message = refused.json()["error"]
            assert f"{rows:,} rows" in message and f"limit is {QUEUE}" in message
            assert "max_batch_size" in message
        assert stored(server.db_path, tag) == {}  # not one row run or stored
        # A batch at the limit runs whole.
        full = client.post(
            "/v2/models/iris/infer", json=combined(QUEUE), headers={"X-Request-ID": f"{tag}-ok"}
        )
        assert full.status_code == 200, full.text
        assert full.json()["outputs"][0]["shape"] == [QUEUE, 1]
    assert stored(server.db_path, f"{tag}-ok") == {"ok": QUEUE}


@pytest.mark.parametrize(
    ("tensor", "words"),
    [
        pytest.param({"datatype": {"FP32": True}}, ["datatype", "{'FP32': True}"], id="dtype-obj"),
        pytest.param({"datatype": ["FP32"]}, ["datatype", "['FP32']"], id="dtype-list"),
        pytest.param({"datatype": None}, ["datatype", "None"], id="dtype-null"),
        # 300 dimensions of 2**63 - 1: the element count has ~5,700 digits, past the length
        # Python prints an int (a ValueError, a 500, before).
        pytest.param({"shape": [2**63 - 1] * 300}, ["shape", "more than 4 elements"], id="shape"),
        pytest.param({"shape": [2**62, 2**62]}, ["shape", "more than 4 elements"], id="shape-2d"),
    ],
)
def test_hostile_tensor_descriptions_are_400s(
    server: LiveServer, tensor: dict[str, Any], words: list[str]
) -> None:
    body = combined(1)
    body["inputs"][0].update(tensor)
    response = httpx.post(f"{server.url}/v2/models/iris/infer", json=body, timeout=30)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert all(word in message for word in words), message
    assert len(message) < 400  # the caller's value is quoted, not echoed whole


def test_max_body_below_one_is_refused_in_one_line(cli: Any) -> None:
    for value in ("0", "-5"):
        result = cli("serve", "--port", str(free_port()), "--max-body", value, timeout=60)
        assert result.code == 2, result.stderr
        assert result.stderr.strip() == f"inferdeck: --max-body must be at least 1 (got {value})"


# -- `inferdeck serve` as a subprocess -----------------------------------------------------------


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (EOF or reset, after any 408 it wrote)."""
    try:
        while chunk := sock.recv(4096):
            del chunk
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


@pytest.mark.slow
def test_slow_heads_and_endless_bodies_neither_hold_sockets_nor_keep_clients_out(
    tmp_path: Path,
) -> None:
    header_s, body_s = 20.0, 25.0
    served = ServeProcess(
        tmp_path / "slow.log",
        "--header-timeout",
        str(header_s),
        "--body-timeout",
        str(body_s),
        db=tmp_path / "slow.db",
        fd_limit=1024,
    )
    attackers: list[tuple[socket.socket, bytes]] = []  # each socket, and what it trickles
    try:
        started = time.monotonic()
        # 1,000 slow heads and 100 chunked bodies that never end: more sockets than the
        # server's 1,024 descriptors allow.
        for i in range(1100):
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
            if i < 1000:
                sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                sock.sendall(
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
                )
            sock.setblocking(False)
            attackers.append((sock, b"a" if i < 1000 else b"1\r\n \r\n"))
        # Ordinary clients are answered while the attack holds its sockets: well before the
        # first deadline would free any of them.
        with httpx.Client(base_url=served.url, timeout=header_s / 2) as client:
            for _ in range(10):
                # A fresh connection each time, as a new client would open.
                response = client.post("/predict", json=BODY, headers={"Connection": "close"})
                assert response.status_code == 200, response.text
        assert time.monotonic() - started < header_s
        # Trickling bytes does not extend a deadline: every attacker keeps sending until the
        # server has closed it, and all are closed by the deadlines (plus a margin).
        deadline = started + body_s + 30
        open_ = list(attackers)
        while open_:
            assert time.monotonic() < deadline, f"{len(open_)} slow sockets still open"
            still = []
            for sock, trickle in open_:
                if closed_by_server(sock):
                    continue
                with contextlib.suppress(OSError):
                    sock.send(trickle)
                still.append((sock, trickle))
            open_ = still
            time.sleep(0.5)
    finally:
        for sock, _ in attackers:
            sock.close()
        _, stderr = served.stop()
    assert served.proc.returncode == 0, stderr  # SIGTERM: a graceful drain, exit 0
    assert "Traceback" not in stderr


def _newer_schema(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("PRAGMA user_version = 999")
    return path


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("make", "words"),
    [
        pytest.param(lambda p: p.mkdir() or p, "is a directory", id="folder"),
        pytest.param(
            lambda p: p.write_bytes(b"not a database at all " * 200) and p,
            "file is not a database",
            id="corrupt",
        ),
        pytest.param(_newer_schema, "schema v999 is newer", id="newer-schema"),
    ],
)
def test_a_database_serve_cannot_use_is_one_line_before_any_model_loads(
    cli: Any, tmp_path: Path, make: Any, words: str, workers: str
) -> None:
    db = make(tmp_path / "bad.db")
    port = str(free_port())
    result = cli("serve", "--port", port, "--workers", workers, "--db", db, timeout=90)
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("inferdeck: "), result.stderr
    assert words in result.stderr and str(db) in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_line_before_the_database_or_models(
    cli: Any, tmp_path: Path, workers: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "never.db"
        result = cli("serve", "--port", str(port), "--workers", workers, "--db", db, timeout=90)
    assert result.code == 2, result.stderr
    assert (
        result.stderr == f"inferdeck: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    assert not db.exists()  # refused before the database was opened, let alone the models


def _read_until_closed(sock: socket.socket, within_s: float, trickle: bytes) -> bytes:
    """What the server sends before it closes `sock`; fails if it is still open after
    `within_s` (the client keeps trickling bytes, which must not extend a deadline)."""
    sock.setblocking(False)
    received = b""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except BlockingIOError:
            with contextlib.suppress(OSError):
                sock.send(trickle)
            time.sleep(0.1)
            continue
        except OSError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"still open after {within_s} s; received {received!r}")


def test_a_late_head_or_body_is_answered_408_and_closed(tmp_path: Path) -> None:
    served = ServeProcess(
        tmp_path / "late.log",
        "--header-timeout",
        "1",
        "--body-timeout",
        "2",
        db=tmp_path / "late.db",
    )
    try:
        with (
            socket.create_connection(("127.0.0.1", served.port)) as head,
            socket.create_connection(("127.0.0.1", served.port)) as body,
        ):
            head.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            body.sendall(
                b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nX-Request-ID: late-body\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
            )
            # Each gets a 408 and EOF; generous bounds, as the machine may be busy.
            assert _read_until_closed(head, 30, b"a").startswith(b"HTTP/1.1 408 ")
            assert _read_until_closed(body, 30, b"1\r\n \r\n").startswith(b"HTTP/1.1 408 ")
        # A client that keeps its connection and sends requests back to back is unaffected.
        with httpx.Client(base_url=served.url, timeout=30) as client:
            for _ in range(3):
                assert client.post("/predict", json=BODY).status_code == 200
    finally:
        _, stderr = served.stop()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    late = [entry for entry in lines if entry["request_id"] == "late-body"]
    assert [entry["status"] for entry in late] == [408]
    assert "Traceback" not in stderr


def test_a_start_up_failure_is_logged_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Past the CLI's own check (which refuses this folder before uvicorn starts): the same
    # failure inside a worker's lifespan.
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    config = uvicorn.Config(
        asgi_app(ServerSettings(db_path=folder)),
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        lifespan="on",
    )
    with caplog.at_level(logging.INFO, logger="uvicorn.error"), pytest.raises(SystemExit):
        uvicorn.Server(config).run()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"StorageError: database path {folder} is a directory",
        "Application startup failed. Exiting.",
    ]


def test_the_bound_socket_gives_connections_tcp_nodelay() -> None:
    """`serve` binds its socket itself (to report a port in use before models load); asyncio
    sets TCP_NODELAY on accepted connections only when that socket says it is TCP. Without it,
    every keep-alive answer waited ~40 ms for the client's delayed ACK."""
    import asyncio

    from engine.cli.serve import _listen

    async def accepted_nodelay() -> int:
        sock = _listen("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            value = await asyncio.wait_for(seen, 10)
            writer.close()
        return value

    assert asyncio.run(accepted_nodelay()) == 1


@pytest.mark.slow
def test_a_head_past_the_bound_is_431_and_a_large_body_is_not_mistaken_for_one(
    tmp_path: Path,
) -> None:
    server = ServeProcess(tmp_path / "head.log", db=tmp_path / "head.db")
    try:
        _head_and_body(server)
    finally:
        _, stderr = server.stop()
    assert "Traceback" not in stderr


def _head_and_body(server: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        # Headers sent in pieces that never end the head: refused once past the bound, not
        # buffered for as long as the client keeps sending.
        header = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        answer = _read_until_closed(sock, 30, header)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert len(answer) < 1000
    # A body far larger than the bound, arriving with its head in the same reads, is a body.
    rows = [{"name": "input", "shape": [8000, 4], "datatype": "FP32", "data": SETOSA * 8000}]
    big = json.dumps({"inputs": rows}).encode()
    assert len(big) > 100_000
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(big)
            + big
        )
        answer = _read_until_closed(sock, 60, b"")
    # 8,000 rows is past the queue (512): refused by the service for that reason, not the head.
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"512" in answer
    assert httpx.get(f"{server.url}/health", timeout=30).status_code == 200
