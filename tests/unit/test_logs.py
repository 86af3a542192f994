"""Logs stay bounded when a failure repeats: a real `inferdeck serve` whose every database write
fails, and the handlers every front door installs (engine/logs.py) rotating the crash log.

Before: on a full disk `crash.log` gained a traceback per failed commit (4,821 in 20 s) and
stderr a line per failure; with descriptors used up, stderr got half a million identical lines.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO
from live_server import BODY, free_port

from engine import logs

REQUESTS = 2000
REPEATED = re.compile(r"\(repeated ([\d,]+) more times in [\d,]+ s\)")


async def _hammer(url: str, count: int) -> list[int]:
    """`count` predictions, 32 at a time; the status of each answer."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(32)

        async def one() -> int:
            async with gate:
                return (await client.post("/predict", json=BODY)).status_code

        return list(await asyncio.gather(*(one() for _ in range(count))))


def _wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "serve exited before it was ready"
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("serve did not become ready")


@pytest.mark.slow
def test_serve_with_every_write_failing_logs_each_failure_kind_once_with_a_count(
    tmp_path: Path,
) -> None:
    db = tmp_path / "serve.db"
    state = tmp_path / "state"  # platformdirs puts the log folder under XDG_STATE_HOME
    crash = state / "inferdeck" / "log" / logs.CRASH_LOG
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "stderr.txt").open("wb") as err:  # a file: a full pipe would stall serve
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--db", str(db)],
            cwd=REPO,
            env={**os.environ, "XDG_STATE_HOME": str(state)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            _wait_ready(url, proc)
            # From now on every commit that stores a request fails, as on a full disk (the
            # server's own connection sees the new trigger at its next statement).
            with sqlite3.connect(db) as conn:
                conn.execute(
                    "CREATE TRIGGER fail_writes BEFORE INSERT ON requests "
                    "BEGIN SELECT RAISE(ABORT, 'database or disk is full (simulated)'); END"
                )
            statuses = asyncio.run(_hammer(url, REQUESTS))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    failed = sum(status >= 500 for status in statuses)
    assert failed == REQUESTS, sorted(set(statuses))  # every write failed, every answer says so
    stderr = (tmp_path / "stderr.txt").read_text(errors="replace")
    # The per-request access lines (JSON, one per request by design) are not failures.
    lines = [line for line in stderr.splitlines() if not line.startswith("{")]
    assert len(lines) <= 30, "\n".join(lines[:40])
    assert "Traceback" not in stderr
    crash_lines = crash.read_text().splitlines()
    assert sum("Traceback (most recent call last)" in line for line in crash_lines) <= 10
    # Each destination saw every failed commit: written once a window, the rest counted. The
    # totals agree, so no count was lost, not even the last one (written as serve stopped).
    stderr_total = _occurrences(lines, "ERROR: database commit failed")
    crash_total = _occurrences(crash_lines, "ERROR storage.writer: database commit failed")
    assert stderr_total == crash_total, (lines, crash_lines[-5:])
    assert stderr_total > 10  # the failure did repeat, through the real writer


def _occurrences(lines: list[str], kind: str) -> int:
    """Records of `kind` a log stands for: lines written plain, plus the counts of the lines
    that say how many more there were."""
    total = 0
    for line in lines:
        if kind in line:
            counted = REPEATED.search(line)
            total += int(counted.group(1).replace(",", "")) if counted else 1
    return total


def test_crash_log_rotates_at_its_size_limit_and_keeps_its_backups(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The set-up `inferdeck` installs for the app and every command: distinct failures (each
    written, none merged) fill the crash log past its limit several times over."""
    crash = tmp_path / "log" / logs.CRASH_LOG
    last_backup = crash.with_name(f"{logs.CRASH_LOG}.{logs.BACKUPS}")
    root, crash_logger = logging.getLogger(), logging.getLogger(logs.CRASH_LOGGER)
    saved = (root.handlers[:], root.level)

    def fail(i: int) -> None:
        try:
            raise OSError(28, f"No space left on device (write {i})")
        except OSError:
            # A long message (a path, a query): fewer records fill the files.
            logging.getLogger(f"inferdeck.test.part{i}").exception("commit failed: %s", "x" * 4000)

    try:
        logs.configure(crash)
        i = 0
        while not last_backup.exists():  # fill the file and every backup...
            fail(i)
            i += 1
        for _ in range(i // logs.BACKUPS):  # ...and a file's worth more: the oldest goes
            fail(i)
            i += 1
        files = sorted(p.name for p in crash.parent.iterdir())
        backups = [f"{logs.CRASH_LOG}.{n}" for n in range(1, logs.BACKUPS + 1)]
        assert files == [logs.CRASH_LOG, *backups]
        for path in crash.parent.iterdir():
            assert path.stat().st_size <= logs.MAX_BYTES
        assert crash.with_name(backups[0]).stat().st_size > logs.MAX_BYTES * 0.9  # filled first
        assert f"(write {i - 1})" in crash.read_text()  # the newest is in the current file
        assert "(write 0)" not in "".join(p.read_text() for p in crash.parent.iterdir())
        err = capfd.readouterr().err
        assert err.count("\n") == i  # stderr: one line per distinct failure, no traceback
        assert "Traceback" not in err
    finally:
        for logger in (root, crash_logger):
            for handler in logger.handlers[:]:
                if handler not in saved[0]:  # ours; pytest's own stay
                    logger.removeHandler(handler)
                    handler.close()
        root.setLevel(saved[1])


def test_repeats_are_counted_per_window_and_the_count_is_written_at_close(
    tmp_path: Path,
) -> None:
    """The gate itself, with a clock the test moves: one line per kind per window, the count
    written when the window has passed, and what is still pending written at close."""
    now = [0.0]
    handler = logs.CrashLogHandler(tmp_path / "crash.log")
    handler.gate = logs.RepeatGate(window_s=60.0, clock=lambda: now[0])
    log = logging.getLogger("inferdeck.test.gate")
    log.propagate = False
    log.addHandler(handler)
    try:
        for n in range(4821):
            now[0] = n * 20 / 4821  # 4,821 failures in 20 s
            try:
                raise OSError(28, "No space left on device")
            except OSError:
                log.exception("database commit failed (batch %d)", n)
        now[0] = 70.0
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            log.exception("database commit failed (batch %d)", 4821)
        now[0] = 75.0
        for _ in range(5):
            try:
                raise OSError(28, "No space left on device")
            except OSError:
                log.exception("database commit failed (batch %d)", 0)
    finally:
        log.removeHandler(handler)
        handler.close()
    text = (tmp_path / "crash.log").read_text()
    assert text.count("Traceback (most recent call last)") == 2
    # At 70 s the window has passed: the count is written before the new record (which,
    # the first of a new window, keeps its traceback).
    assert "failed (batch 4820) (repeated 4,820 more times in 70 s)\n" in text
    assert "failed (batch 4821)\nTraceback" in text
    assert text.rstrip().endswith("(batch 0) (repeated 5 more times in 5 s)")  # written at close
