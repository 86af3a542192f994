"""The pre-fork supervisor (`engine.server.prefork`) with apps that fail on purpose, each in a
process of its own (it forks and takes over the signals): a worker whose start-up fails stops
the service at once, workers that keep dying are not forked forever, and a stop signal is
answered promptly whatever the workers do."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from engine.server.prefork import CRASH_LIMIT, EXIT_STARTUP_FAILED

# A supervisor over an app whose lifespan does what MODE says, two workers, on a free port.
SCRIPT = """
import os, socket, sys, threading
import uvicorn
from engine.server.prefork import Supervisor

MODE = sys.argv[1]

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        if MODE == "fail":
            await send({"type": "lifespan.startup.failed", "message": "no database"})
            return
        await send({"type": "lifespan.startup.complete"})
        os.write(1, b"started %d\\n" % os.getpid())  # one write: two workers share the pipe
        if MODE == "crash":
            threading.Timer(0.2, os._exit, (1,)).start()
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.set_inheritable(True)
config = uvicorn.Config(app, log_level="warning")
sys.exit(Supervisor(config, sock, 2).run())
"""


def _start(mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_worker_whose_start_up_fails_stops_the_service() -> None:
    proc = _start("fail")
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == EXIT_STARTUP_FAILED, stderr
    assert stderr.count("no database") <= 2, stderr  # the two first workers, no more forks


def test_workers_that_keep_dying_are_not_forked_forever() -> None:
    proc = _start("crash")
    try:
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == EXIT_STARTUP_FAILED, stderr
    started = stdout.count("started")
    assert 2 + CRASH_LIMIT - 2 <= started <= 2 + CRASH_LIMIT, (started, stderr)
    assert "crashed within" in stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_drains_healthy_workers_and_exits_cleanly(
    sig: signal.Signals, tmp_path: Path
) -> None:
    proc = _start("serve")
    try:
        assert proc.stdout is not None
        seen = [proc.stdout.readline(), proc.stdout.readline()]  # both workers have started
        assert all(line.startswith("started") for line in seen), seen
        stopping = time.monotonic()
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - stopping < 30
    assert "Traceback" not in stderr
