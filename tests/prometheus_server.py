"""A real Prometheus (Debian's `prometheus`, which `make test` installs) for tests: a free
127.0.0.1 port, a scrape every second of the targets given, its database in a test's folder."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from live_server import free_port

PROMETHEUS = Path("/usr/bin/prometheus")
T = TypeVar("T")


class Prometheus:
    """`prometheus` scraping `targets` (host:port each) as job `job`; `query` asks its API."""

    def __init__(self, folder: Path, targets: Sequence[str], job: str = "inferdeck") -> None:
        if not PROMETHEUS.exists():
            raise AssertionError(
                f"{PROMETHEUS} is missing: run `make test`, which installs Debian's prometheus"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        listed = ", ".join(f"'{t}'" for t in targets)
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {job}\n"
            "    static_configs:\n"
            f"      - targets: [{listed}]\n"
        )
        self.log = folder / "prometheus.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def ready(self) -> bool | None:
        """True once `/-/ready` says 200 (None before: a `wait_for` probe)."""
        assert self.proc.poll() is None, f"prometheus exited: {self.log.read_text()}"
        try:
            return True if self.client.get("/-/ready").status_code == 200 else None
        except httpx.TransportError:
            return None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        response = self.client.get("/api/v1/query", params={"query": expr})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, expr: str) -> float | None:
        """The value of a query that gives one series, or None while it gives none."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise


def wait_for(
    what: str, probe: Callable[[], T | None], detail: Callable[[], str], deadline_s: float = 60
) -> T:
    """Poll `probe` until it returns something other than None, for at most `deadline_s`
    (generous for a loaded 2-core machine; polled often, so a fast one passes fast)."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {detail()}"
        time.sleep(0.1)
