"""The service for tests: a real uvicorn on 127.0.0.1 in a thread, a free port, a valid body."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn
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
            app or asgi_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
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
