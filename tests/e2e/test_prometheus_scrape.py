"""A real Prometheus (Debian's `prometheus`, which `make test` installs) scrapes `inferdeck serve
--workers 2` every second: its queries must see every request however the scrapes fall on
the workers, the target up, and a latency quantile computed from the duration histogram.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from live_server import BODY, ServeProcess, free_port

PROMETHEUS = Path("/usr/bin/prometheus")
JOB = "inferdeck"
# Bounds each wait; generous for a loaded 2-core machine, and polled often so a fast one passes
# fast (scrapes come every second).
DEADLINE_S = 60.0
SENT = 40

T = TypeVar("T")


class Prometheus:
    """`prometheus` on a free 127.0.0.1 port, scraping one target every second, with its
    database in a temporary folder; `query` asks its HTTP API."""

    def __init__(self, folder: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
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


def wait_for(what: str, probe: Callable[[], T | None], detail: Callable[[], str]) -> T:
    """Poll `probe` until it returns something other than None, for at most `DEADLINE_S`."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {detail()}"
        time.sleep(0.1)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is missing: run `make test`, which installs Debian's prometheus")
    process = ServeProcess(tmp_path / "serve.log", "--workers", "2")
    try:
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(timeout=30)


@pytest.fixture
def prometheus(tmp_path: Path, serve: ServeProcess) -> Iterator[Prometheus]:
    prom = Prometheus(tmp_path, f"127.0.0.1:{serve.port}")
    try:
        wait_for("prometheus to be ready", prom.ready, prom.log.read_text)
        yield prom
    finally:
        prom.stop()


@pytest.mark.slow
def test_prometheus_scrapes_two_workers(serve: ServeProcess, prometheus: Prometheus) -> None:
    up = f'up{{job="{JOB}"}}'
    ok = f'sum(inferdeck_requests_total{{job="{JOB}", outcome="ok"}})'

    def scraped_at_zero() -> bool | None:
        # A scrape before any request, so a rate over the window has a start to grow from.
        idle = prometheus.scalar(up) == 1 and prometheus.scalar(ok) == 0
        return True if idle else None

    def detail() -> str:
        targets = prometheus.client.get("/api/v1/targets").text
        return f"{up}={prometheus.query(up)} {ok}={prometheus.query(ok)} targets: {targets}"

    wait_for("a first scrape of the idle service", scraped_at_zero, detail)
    for _ in range(SENT):
        response = httpx.post(f"{serve.url}/predict", json=BODY, timeout=30)  # a new connection
        assert response.status_code == 200, response.text

    def all_counted() -> bool | None:
        return True if prometheus.scalar(ok) == SENT else None

    wait_for(f"{ok} == {SENT}", all_counted, detail)
    assert prometheus.scalar(up) == 1
    # Both workers' gauges reach Prometheus, one series each.
    workers = prometheus.query(f'inferdeck_worker_resident_memory_bytes{{job="{JOB}"}}')
    assert len({series["metric"]["pid"] for series in workers}) == 2, workers
    assert prometheus.scalar(f'min(inferdeck_model_ready{{job="{JOB}"}})') == 1

    median = (
        "histogram_quantile(0.5, sum by (le) "
        f'(rate(inferdeck_request_duration_seconds_bucket{{job="{JOB}"}}[30s])))'
    )

    def finite_median() -> float | None:
        value = prometheus.scalar(median)
        return value if value is not None and math.isfinite(value) else None

    seconds = wait_for(
        "a finite median latency", finite_median, lambda: str(prometheus.query(median))
    )
    assert 0 < seconds < 10

    # Stays exact on later scrapes too, whichever worker answers them.
    time.sleep(2.5)
    assert prometheus.scalar(ok) == SENT
    code, log = serve.stop()
    assert code == 0, log
