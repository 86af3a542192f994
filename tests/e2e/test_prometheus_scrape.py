"""A real Prometheus (Debian's `prometheus`, which `make test` installs) scrapes `inferdeck serve
--workers 2` every second: its queries must see every request however the scrapes fall on
the workers, the target up, and a latency quantile computed from the duration histogram.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import BODY, ServeProcess
from prometheus_server import PROMETHEUS, Prometheus, wait_for

JOB = "inferdeck"
SENT = 40


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
    prom = Prometheus(tmp_path, [f"127.0.0.1:{serve.port}"], job=JOB)
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
