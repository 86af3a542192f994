"""The service for tests: a real uvicorn on 127.0.0.1 in a thread (`LiveServer`) or `inferdeck
serve` as its own process (`ServeProcess`), a free port, a valid body."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import uvicorn
from conftest import REPO
from starlette.types import ASGIApp

from engine.server import ServerSettings, asgi_app

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BODY = {"client_id": "svc-test", "model": "iris", "input_payload": ROW}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """A uvicorn server in a thread, as `inferdeck serve` runs it (one worker)."""

    def __init__(self, settings: ServerSettings, app: ASGIApp | None = None) -> None:
        """`app`: another composition of the service than `asgi_app(settings)`."""
        self.db_path = settings.db_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app or asgi_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            # uvicorn closes a keep-alive connection after 5 s without a request. The test's
            # client shares this process: when the machine stalls the process for that long,
            # the server's timer fires before the client's next request on that connection is
            # read, the close resets the connection under the request, and the test fails on a
            # ReadError that says nothing of what it checks (seen once in a CI run of the
            # overload test). Tests of idle connections use `ServeProcess` and its own flags.
            timeout_keep_alive=120,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        # Start-up imports torch and warms the models: measured at 57 s on a 2-core machine
        # shared with other test runs (load 19), where a 60 s deadline failed tests at setup.
        # The deadline bounds a failure only; a ready server returns as soon as it answers.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


class ServeProcess:
    """`inferdeck serve` as its own process (its work never shares a GIL with the test's
    client) on a free 127.0.0.1 port, waited on until /ready says 200.

    stderr goes to a file, not a pipe: a pipe nobody reads could fill and block the service's
    request log. `db` is its database (`INFERDECK_DB`, by default beside the log); `argv` the
    command that starts `inferdeck` (the checkout's by default, an installed one's in the wheel
    test)."""

    def __init__(
        self,
        log: Path,
        *args: str,
        db: Path | None = None,
        argv: Sequence[str] = (sys.executable, "-m", "engine.cli"),
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
        fd_limit: int | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        environment = dict(os.environ if env is None else env)
        # Never the user's own database: the one asked for, the environment's, or one beside
        # the log.
        self.db = db or Path(environment.get("INFERDECK_DB") or log.with_suffix(".db"))
        environment["INFERDECK_DB"] = str(self.db)

        def limit_fds() -> None:
            # As from a terminal: a runner started under `nohup` would hand down an ignored
            # SIGHUP, which serve rightly keeps ignoring.
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            if fd_limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

        with log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [*argv, "serve", "--port", str(self.port), *args],
                cwd=cwd,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=limit_fds,
            )
        deadline = time.monotonic() + 120
        while not self.ready():
            assert self.proc.poll() is None, f"serve exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.1)

    def ready(self) -> bool:
        """Whether GET /ready answers 200 (not yet listening counts as not ready)."""
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200
        return False

    def predict(self) -> str:
        """POST /predict with a valid body: the request ID of its 200 answer."""
        response = httpx.post(f"{self.url}/predict", json=BODY, timeout=30)
        assert response.status_code == 200, response.text
        request_id: str = response.json()["request_id"]
        return request_id

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Sends `sig` and waits: the exit status and everything serve wrote to stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return code, self.log.read_text()
