"""A load run in a child process (`LoadProcess`), as the desktop app runs one: its figures read
from another thread through `latest()`, stopped through its stdin, its summary joined by the
parent's extra, every request sent stored; and what happens when either side goes away."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from tiny_server import TinyServer, target

from engine.remote.load import LoadSnapshot
from engine.remote.load import process as load_process
from engine.remote.load.process import LoadProcess, LoadSpec
from engine.remote.plan import LoadPlan
from storage.database import open_database

TOKEN = "s3cret-token-value"


def _stored(db_path: Path, run_id: str) -> tuple[int, str, dict[str, object]]:
    with sqlite3.connect(db_path) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM requests WHERE run_id = ?", (run_id,)
        ).fetchone()
        status, summary = conn.execute(
            "SELECT status, summary FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
    return int(count), str(status), orjson.loads(summary)


def _until(check: Callable[[], bool], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # (polling another process's figures: nothing to await)


async def _make_db(path: Path) -> None:
    db = await open_database(path)  # the schema, as the app has it before a run
    await db.close()


def test_a_run_in_a_child_is_read_and_stopped_from_here_and_stores_every_request(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "t.db"
    asyncio.run(_make_db(db_path))
    started: list[str] = []
    with TinyServer(delay_s=0.05) as server:
        spec = LoadSpec(
            target(server.url),
            LoadPlan(rate=200, duration_s=60),
            payload_kind="form",
            payload_text='{"x": 1}',
            token=TOKEN,
            db_path=str(db_path),
            publish_every_s=0.02,
        )
        process = LoadProcess(spec, on_started=started.append, summary_extra=lambda: {"extra": 7})
        future = process.start()
        seen: list[LoadSnapshot] = []
        _until(lambda: process.latest() is not None)
        pid = process.pid
        assert pid is not None and pid != os.getpid()
        # The token crossed on stdin: neither the child's arguments nor its environment hold it.
        for part in ("cmdline", "environ"):
            assert TOKEN.encode() not in Path(f"/proc/{pid}/{part}").read_bytes()
        while not seen or seen[-1].sent < 50:
            snap = process.latest()
            if snap is not None and (not seen or snap is not seen[-1]):
                seen.append(snap)
            assert not future.done(), future.result()
            time.sleep(0.01)
        process.stop()
        outcome = future.result(timeout=60)
        process.join(10)
    assert outcome.error is None and outcome.summary is not None
    assert started and started[0].endswith("is up")
    summary = outcome.summary
    assert summary["extra"] == 7 and int(summary["sent"]) >= 50
    final = outcome.final
    assert final is not None and final.done and final.completed == summary["sent"]
    sent = [s.sent for s in seen]
    assert sent == sorted(sent) and len(set(sent)) > 1  # published as it went
    count, status, stored = _stored(db_path, str(summary["run_id"]))
    assert count == summary["sent"] == summary["accepted"]
    assert status == "done" and stored["extra"] == 7
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped


def test_a_target_that_is_down_or_a_bad_payload_is_refused_with_why_and_sends_nothing(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "t.db"
    down = LoadSpec(target("http://127.0.0.1:9"), LoadPlan(rate=10, requests=5), db_path=None)
    outcome = LoadProcess(down).start().result(timeout=60)
    assert outcome.summary is None
    assert outcome.error is not None and "is down" in outcome.error
    with TinyServer() as server:
        bad = LoadSpec(
            target(server.url),
            LoadPlan(rate=10, requests=5),
            payload_kind="form",
            payload_text="[1, 2",
            db_path=str(db_path),
        )
        outcome = LoadProcess(bad).start().result(timeout=60)
        assert server.count == 0
    assert outcome.error is not None and outcome.error.startswith("the payload is not JSON")
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (0,)


@pytest.mark.parametrize("gone", ["stdin", "both pipes"])
def test_a_parent_that_goes_away_mid_run_still_gets_every_request_sent_stored(
    tmp_path: Path, gone: str
) -> None:
    """The parent's end of stdin closes (it quit), or both its pipes (it was killed, and no
    one reads the events any more): the child stops the run, gives what is out its grace and
    stores every request it sent and its summary, then exits."""
    db_path = tmp_path / "t.db"
    with TinyServer(delay_s=0.02) as server:
        spec = LoadSpec(target(server.url), LoadPlan(rate=200, duration_s=60), db_path=str(db_path))
        child = subprocess.Popen(
            [sys.executable, "-m", "engine.remote.load.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(spec.to_line())
        child.stdin.flush()
        events: list[dict[str, object]] = []
        while not events or events[-1]["event"] != "started":
            events.append(orjson.loads(child.stdout.readline()))
        # Before "started" the server saw only the health probes and the preflight request.
        before_traffic = server.count
        _until(lambda: server.count >= before_traffic + 40)
        child.stdin.close()  # the parent is gone
        if gone == "both pipes":
            child.stdout.close()  # (its next event meets a broken pipe)
            assert child.wait(60) == 0
            rest: list[dict[str, object]] = []
        else:
            rest = [orjson.loads(line) for line in child.stdout]
            assert child.wait(60) == 0
            child.stdout.close()
    with sqlite3.connect(db_path) as conn:
        ((run_id,),) = conn.execute("SELECT run_id FROM runs").fetchall()
    count, status, summary = _stored(db_path, str(run_id))
    assert status == "done" and int(str(summary["sent"])) >= 40
    assert count == summary["sent"]
    if gone == "stdin":
        kinds = [e["event"] for e in rest]
        assert "ending" in kinds and kinds[-1] == "finished"
        assert rest[-1]["summary"] == summary


def test_a_child_that_cannot_start_is_told_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """No interpreter to run it (a venv removed under the app, no memory to fork): the run ends
    with a sentence, never an exception out of the reader."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    spec = LoadSpec(target("http://127.0.0.1:9"), LoadPlan(rate=1, requests=1))
    outcome = LoadProcess(spec).start().result(timeout=30)
    assert outcome.summary is None and outcome.error is not None
    assert outcome.error.startswith("the load process could not run: ")
    assert "/nonexistent/python3" in outcome.error


def test_a_child_that_dies_is_told_in_words_not_a_hang(tmp_path: Path) -> None:
    with TinyServer() as server:
        spec = LoadSpec(target(server.url), LoadPlan(rate=50, duration_s=60), db_path=None)
        process = LoadProcess(spec)
        future = process.start()
        _until(lambda: process.latest() is not None)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        outcome = future.result(timeout=30)
        process.join(10)
    assert outcome.summary is None
    assert outcome.error == "the load process ended unexpectedly (exit code -9)"


NOISY_CHILD = """
import sys
import orjson
sys.stdin.buffer.readline()  # the spec
out = sys.stdout.buffer
out.write(b"a library's stray print\\n[1, 2]\\n{not json\\n")
out.write(orjson.dumps({"event": "started", "health": "up"}) + b"\\n")
summary = {"run_id": "r", "sent": 0}
out.write(orjson.dumps({"event": "finished", "summary": summary, "final": None}) + b"\\n")
out.flush()
"""


def test_lines_that_are_not_events_are_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever else reaches the child's stdout (the child sends its own prints to stderr, but
    a library writing to the file descriptor would) is not read as an event, nor a failure."""
    (tmp_path / "noisy_child.py").write_text(NOISY_CHILD)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(load_process, "CHILD_MODULE", "noisy_child")
    started: list[str] = []
    spec = LoadSpec(target("http://127.0.0.1:9"), LoadPlan(rate=1, requests=1))
    outcome = LoadProcess(spec, on_started=started.append).start().result(timeout=60)
    assert outcome.error is None and outcome.summary == {"run_id": "r", "sent": 0}
    assert started == ["up"]
