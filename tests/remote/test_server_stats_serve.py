"""`inferdeck serve`'s own statistics read back by `ServerWatcher`, from real processes.

`serve --workers 2`: its OIP statistics and its `/metrics` (both shared by the workers) each
count exactly the requests sent and the one it rejected, wherever the connections landed. Two
replicas behind a real Prometheus: the fleet's total and each replica's share match what was
sent to each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import BODY, ROW, ServeProcess
from prometheus_server import Prometheus, wait_for

from engine.remote.server_stats import ServerSources, ServerWatcher
from engine.remote.targets import Target

BAD = {**BODY, "input_payload": {**ROW, "sepal_length": "not a number"}}
DEADLINE_S = 60.0


def _kill(process: ServeProcess) -> None:
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def replica_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path_factory.mktemp("a") / "serve.log", "--workers", "2")
    try:
        yield process
    finally:
        _kill(process)


@pytest.fixture(scope="module")
def replica_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = ServeProcess(tmp_path_factory.mktemp("b") / "serve.log")
    try:
        yield process
    finally:
        _kill(process)


def send(url: str, count: int, body: object = BODY, status: int = 200) -> None:
    """`count` requests, each on a connection of its own (so both workers get some)."""
    for _ in range(count):
        response = httpx.post(f"{url}/predict", json=body, timeout=30)
        assert response.status_code == status, response.text


async def poll_until(watchers: list[ServerWatcher], requests: int) -> None:
    """Poll until each watcher's intervals add up to `requests` (or the deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        for watcher in watchers:
            await watcher.poll()
        counted = [sum(i.requests for i in w.series()) for w in watchers]
        if all(c >= requests for c in counted) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


@pytest.mark.slow
def test_serve_statistics_and_metrics_count_every_request(replica_a: ServeProcess) -> None:
    sent = 12
    target = Target(name="serve", base_url=replica_a.url, protocol="inferdeck", model="iris")

    async def run() -> None:
        both = ServerWatcher(target, ServerSources())
        alone = ServerWatcher(
            target, ServerSources(metrics_url=f"{replica_a.url}/metrics", automatic=False)
        )
        await both.start(periodic=False)
        await alone.start(periodic=False)
        try:
            assert both.in_use() == [
                "OIP statistics",
                f"metrics {replica_a.url}/metrics (InferDeck names)",
            ]
            assert alone.in_use() == [f"metrics {replica_a.url}/metrics (InferDeck names)"]
            await asyncio.to_thread(send, replica_a.url, sent)
            await asyncio.to_thread(send, replica_a.url, 1, BAD, 422)
            await poll_until([both, alone], sent)
        finally:
            await both.stop()
            await alone.stop()
        for watcher in (both, alone):
            assert sum(i.requests for i in watcher.series()) == sent
            assert sum(i.failures or 0 for i in watcher.series()) == 1
            summary = watcher.summary()
            assert summary is not None
            assert summary["requests"] == sent
            assert summary["failures"] == 1
            assert summary["queue_ms"] is not None and summary["queue_ms"] >= 0
            assert summary["compute_infer_ms"] is not None and summary["compute_infer_ms"] > 0
            assert summary["server_ms"] is not None and summary["server_ms"] > 0
            assert summary["batch_size_mean"] is not None and summary["batch_size_mean"] >= 1
            assert summary["pending_max"] is not None and summary["pending_max"] >= 0
        # Stage times from the statistics, the queue depth from /metrics.
        summary = both.summary()
        assert summary is not None
        assert summary["source"] == "metrics+oip-stats"
        assert summary["compute_input_ms"] is not None
        assert summary["missing"] == []
        summary = alone.summary()
        assert summary is not None
        assert summary["source"] == "metrics"
        assert summary["missing"] == ["compute_input_ms"]  # serve has no histogram for it
        assert "no compute-input time" in alone.problems()

    asyncio.run(run())


@pytest.mark.slow
def test_prometheus_in_front_of_two_replicas(
    tmp_path: Path, replica_a: ServeProcess, replica_b: ServeProcess
) -> None:
    instances = {f"127.0.0.1:{p.port}": p for p in (replica_a, replica_b)}
    prometheus = Prometheus(tmp_path, list(instances))
    ok = 'inferdeck_requests_total{job="inferdeck", outcome="ok", model="iris"}'
    try:
        wait_for("prometheus to be ready", prometheus.ready, prometheus.log.read_text)

        def both_scraped() -> bool | None:
            # Every replica's counter is in Prometheus before the first snapshot: what either
            # served before (an earlier test) is then history, not counted.
            seen = {s["metric"]["instance"] for s in prometheus.query(ok)}
            return True if seen == set(instances) else None

        wait_for("both replicas scraped", both_scraped, lambda: str(prometheus.query(ok)))
        sent = {f"127.0.0.1:{replica_a.port}": 7, f"127.0.0.1:{replica_b.port}": 3}
        target = Target(name="fleet", base_url=replica_a.url, protocol="inferdeck", model="iris")
        sources = ServerSources(prometheus_url=prometheus.url, selector='{job="inferdeck"}')

        async def run() -> ServerWatcher:
            watcher = ServerWatcher(target, sources, interval_s=0.5)
            await watcher.start(periodic=False)
            try:
                shown = f'Prometheus {prometheus.url} {{job="inferdeck"}} (InferDeck names)'
                assert watcher.in_use() == [f"{shown}, 2 replicas"]
                for instance, count in sent.items():
                    await asyncio.to_thread(send, instances[instance].url, count)
                await poll_until([watcher], sum(sent.values()))
                await asyncio.sleep(2.5)  # later scrapes must not count anything twice
            finally:
                await watcher.stop()
            return watcher

        watcher = asyncio.run(run())
        summary = watcher.summary()
        assert summary is not None, watcher.problems()
        assert summary["source"] == "prometheus"
        assert summary["requests"] == 10
        by_instance = {r["instance"]: r for r in summary["replicas"]}
        assert {k: v["requests"] for k, v in by_instance.items()} == sent
        for replica in by_instance.values():
            assert replica["server_ms"] is not None and replica["server_ms"] > 0
            assert replica["pending_max"] is not None
        # The intervals' replicas add up to the same shares.
        shares = {instance: 0 for instance in sent}
        for interval in watcher.series():
            assert interval.source == "prometheus"
            assert interval.requests == sum(r.requests for r in interval.replicas)
            for replica in interval.replicas:
                shares[replica.instance] += replica.requests
        assert shares == sent
    finally:
        prometheus.stop()
