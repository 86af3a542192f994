"""A remote server's own statistics (`engine.remote.server_stats`) from real servers on 127.0.0.1.

A Triton-shaped server (tests/triton_fake.py, real uvicorn) whose counters the test advances:
the OIP statistics and the `nv_inference_*` exposition each give exact requests, failures,
stage means, batch size and queue depth; combined, stage times come from the statistics and the
gauge from the exposition; a restart's counters never count backwards; credentials stay on the
target's own origin. Hostile metrics endpoints (down, stalled, endless, garbage, names missing,
too big to parse quickly) each end a poll within its bound, with the event loop free, a problem
line naming what went wrong, and the other source still counting. The mapping file: the real
MLServer 1.7.1 exposition recorded in tests/data, a user's file merged over the built-in one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from fault_server import FaultServer, Rule, closed_port
from triton_fake import TritonFake, many_models

from engine.remote.server_stats import NAMES_ENV, ServerInterval, ServerSources, ServerWatcher
from engine.remote.server_stats.names import load_matchers
from engine.remote.server_stats.sources import parse_exposition
from engine.remote.targets import Target

T = TypeVar("T")
DATA = Path(__file__).resolve().parents[1] / "data"
MODEL = "resnet"
# A poll's bound is 2 s; a loaded 2-core machine gets generous room on top.
POLL_LIMIT_S = 6.0
LAG_LIMIT_S = 0.5


def triton_target(fake: TritonFake, **fields: object) -> Target:
    return Target(name="triton", base_url=fake.url, protocol="oip", model=MODEL, **fields)


def advance_ten(fake: TritonFake) -> None:
    """Ten requests over two versions: per request 2 ms whole, 0.3 ms queue, 0.1 ms input,
    1 ms infer, 0.05 ms output; one failure; batches of 4. Another model gets traffic too."""
    for version, n in (("1", 6), ("2", 4)):
        fake.advance(
            MODEL,
            version,
            success=n,
            fail=1 if version == "1" else 0,
            us={
                "success": 2000 * n,
                "queue": 300 * n,
                "compute_input": 100 * n,
                "compute_infer": 1000 * n,
                "compute_output": 50 * n,
            },
            inferences=4 * n,
            executions=n,
        )
    fake.advance("other", success=50, us={"queue": 50 * 9000}, inferences=50, executions=50)
    fake.pending[MODEL] = 3


def assert_ten(interval: ServerInterval | None) -> None:
    assert interval is not None
    assert interval.requests == 10
    assert interval.failures == 1
    assert interval.queue_ms == pytest.approx(0.3, rel=1e-9)
    assert interval.compute_input_ms == pytest.approx(0.1, rel=1e-9)
    assert interval.compute_infer_ms == pytest.approx(1.0, rel=1e-9)
    assert interval.compute_output_ms == pytest.approx(0.05, rel=1e-9)
    assert interval.compute_ms == pytest.approx(1.15, rel=1e-9)
    assert interval.server_ms == pytest.approx(2.0, rel=1e-9)
    assert interval.batch_size_mean == pytest.approx(4.0, rel=1e-9)
    assert interval.seconds > 0
    assert interval.throughput_per_s == pytest.approx(10 / interval.seconds)


async def timed(awaitable: Awaitable[T]) -> tuple[T, float, float]:
    """The result, the seconds it took, and the longest the event loop went unserved meanwhile
    (a 5 ms ticker's largest gap)."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    began = time.monotonic()
    try:
        result = await awaitable
    finally:
        took = time.monotonic() - began
        done.set()
        await ticker
    return result, took, max(gaps, default=0.0)


@pytest.fixture
def fake() -> Iterator[TritonFake]:
    with TritonFake() as server:
        advance_ten(server)  # history before the watch: never counted
        yield server


def test_triton_statistics_and_metrics_combined(fake: TritonFake) -> None:
    async def run() -> None:
        watcher = ServerWatcher(triton_target(fake), ServerSources(metrics_url=fake.metrics_url))
        await watcher.start(periodic=False)
        try:
            assert watcher.in_use() == [
                "OIP statistics",
                f"metrics {fake.metrics_url} (Triton names)",
            ]
            advance_ten(fake)
            interval = await watcher.poll()
            assert_ten(interval)
            assert interval is not None
            # The queue depth is only in the exposition; the rest came from the statistics.
            assert interval.pending == 3
            assert interval.source == "metrics+oip-stats"
            assert watcher.problems() == []

            # A restarted server: counters from zero, three requests since. Never negative.
            fake.restart()
            fake.advance(MODEL, success=3, us={"queue": 3 * 500, "success": 3 * 900})
            fake.pending[MODEL] = 0
            after = await watcher.poll()
            assert after is not None
            assert after.requests == 3
            assert after.failures == 0
            assert after.queue_ms == pytest.approx(0.5, rel=1e-9)
            assert after.server_ms == pytest.approx(0.9, rel=1e-9)
            assert after.batch_size_mean is None  # no execution in the interval
            assert after.pending == 0
        finally:
            await watcher.stop()
        await watcher.stop()  # idempotent
        summary = watcher.summary()
        assert summary is not None
        assert summary["source"] == "metrics+oip-stats"
        assert summary["requests"] == 13
        assert summary["failures"] == 1
        assert summary["queue_ms"] == pytest.approx((10 * 0.3 + 3 * 0.5) / 13, rel=1e-9)
        assert summary["server_ms"] == pytest.approx((10 * 2.0 + 3 * 0.9) / 13, rel=1e-9)
        assert summary["batch_size_mean"] == pytest.approx(4.0, rel=1e-9)
        assert summary["pending_max"] == 3
        assert summary["missing"] == []
        assert "replicas" not in summary
        assert [i.requests for i in watcher.series()] == [10, 3, 0]  # the last: stop()'s poll

    asyncio.run(run())


def test_triton_metrics_alone(fake: TritonFake) -> None:
    """The exposition by itself: µs counters, divided by the requests, for this model only."""

    async def run() -> None:
        sources = ServerSources(metrics_url=fake.metrics_url, automatic=False)
        watcher = ServerWatcher(triton_target(fake), sources)
        await watcher.start(periodic=False)
        try:
            advance_ten(fake)
            interval = await watcher.poll()
            assert_ten(interval)
            assert interval is not None
            assert interval.source == "metrics"
            assert interval.pending == 3
            assert watcher.in_use() == [f"metrics {fake.metrics_url} (Triton names)"]
            fake.restart()  # counters of a restarted Triton: from zero, never backwards
            fake.advance(MODEL, success=2, us={"queue": 2 * 700})
            after = await watcher.poll()
            assert after is not None
            assert (after.requests, after.failures) == (2, 0)
            assert after.queue_ms == pytest.approx(0.7, rel=1e-9)
        finally:
            await watcher.stop()

    asyncio.run(run())


def test_statistics_of_every_model_without_a_model(fake: TritonFake) -> None:
    """No model on the target: `/v2/models/stats`, every model summed; and nothing but the
    statistics when automatic discovery finds no `/metrics` on the inference port."""

    async def run() -> None:
        target = Target(name="triton", base_url=fake.url, protocol="oip")
        watcher = ServerWatcher(target, ServerSources())
        await watcher.start(periodic=False)
        try:
            advance_ten(fake)
            interval = await watcher.poll()
            assert interval is not None
            assert interval.requests == 60
            assert interval.source == "oip-stats"
            assert interval.pending is None
            problems = watcher.problems()
            assert f"metrics {fake.url}/metrics: HTTP 404; not used" in problems
            assert "no pending-requests gauge" in problems
        finally:
            await watcher.stop()
        summary = watcher.summary()
        assert summary is not None
        assert summary["missing"] == ["pending"]

    asyncio.run(run())


def test_credentials_stay_on_the_targets_origin(fake: TritonFake) -> None:
    async def run() -> None:
        target = triton_target(fake, headers={"X-Api-Key": "s3cret-key"})
        secret_url = f"{fake.metrics_url}?access_token=t0ken-in-url"
        watcher = ServerWatcher(target, ServerSources(metrics_url=secret_url), token="b3arer")
        await watcher.start(periodic=False)
        await watcher.stop()
        stats_headers = fake.seen["main"][-1]
        assert stats_headers["x-api-key"] == "s3cret-key"
        assert stats_headers["authorization"] == "Bearer b3arer"
        # The metrics port is another origin: none of the target's credentials go there.
        metrics_headers = fake.seen["metrics"][-1]
        assert "x-api-key" not in metrics_headers
        assert "authorization" not in metrics_headers
        shown = " ".join(watcher.in_use() + watcher.problems())
        assert "t0ken-in-url" not in shown
        assert f"{fake.metrics_url}?access_token=***" in shown

        # A source that fails with the secret in its URL: the problem line is redacted too.
        down = f"http://127.0.0.1:{closed_port()}/metrics?api_key=t0ken-in-url"
        failing = ServerWatcher(target, ServerSources(metrics_url=down, automatic=False))
        await failing.start(periodic=False)
        await failing.stop()
        assert failing.summary() is None
        assert failing.in_use() == []
        (line,) = failing.problems()
        assert "t0ken-in-url" not in line and "api_key=***" in line

    asyncio.run(run())


# What each hostile metrics endpoint must be reported as.
FAULTS = {
    "down": "down (connection refused)",
    "stalled": "no answer within",
    "dripping": "no answer within",
    "endless": "answer too large",
    "garbage": "not Prometheus text",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_hostile_metrics_endpoint(fake: TritonFake, fault: str) -> None:
    async def run(url: str) -> None:
        watcher = ServerWatcher(triton_target(fake), ServerSources(metrics_url=url))
        _, took, lag = await timed(watcher.start(periodic=False))
        assert took < POLL_LIMIT_S and lag < LAG_LIMIT_S, (took, lag)
        try:
            advance_ten(fake)
            interval, took, lag = await timed(watcher.poll())
            assert took < POLL_LIMIT_S, took
            assert lag < LAG_LIMIT_S, lag
            assert_ten(interval)  # the statistics still count
            assert interval is not None and interval.source == "oip-stats"
            assert interval.pending is None
            problems = watcher.problems()
            assert any(
                line.startswith(f"metrics {url}: ") and FAULTS[fault] in line for line in problems
            ), problems
            assert "no pending-requests gauge" in problems
            assert watcher.in_use() == ["OIP statistics"]
        finally:
            _, took, _ = await timed(watcher.stop())
            assert took < POLL_LIMIT_S, took

    if fault == "down":
        asyncio.run(run(f"http://127.0.0.1:{closed_port()}/metrics"))
        return
    rule = {
        "stalled": Rule("delay", delay_s=60),
        "dripping": Rule("drip", drip_s=0.2),
        "endless": Rule("endless"),
        "garbage": Rule("garbage"),
    }[fault]
    with FaultServer(statistics_faults=True) as server:
        server.add(rule)
        asyncio.run(run(f"{server.url}/metrics"))


def test_metrics_with_names_missing(fake: TritonFake) -> None:
    async def run() -> None:
        fake.metrics_mode = "missing"  # the success counter only
        sources = ServerSources(metrics_url=fake.metrics_url, automatic=False)
        watcher = ServerWatcher(triton_target(fake), sources)
        await watcher.start(periodic=False)
        try:
            advance_ten(fake)
            interval = await watcher.poll()
            assert interval is not None
            assert interval.requests == 10
            assert interval.failures is None and interval.queue_ms is None
            assert interval.pending is None and interval.batch_size_mean is None
            problems = watcher.problems()
            for words in (
                "no failure counter",
                "no queue time",
                "no compute-infer time",
                "no whole-request time",
                "no pending-requests gauge",
                "no batch sizes (inferences and executions)",
            ):
                assert words in problems, problems
        finally:
            await watcher.stop()
        summary = watcher.summary()
        assert summary is not None
        assert summary["missing"] == [
            "failures",
            "queue_ms",
            "compute_input_ms",
            "compute_infer_ms",
            "compute_output_ms",
            "server_ms",
            "pending",
            "batch_size_mean",
        ]

    asyncio.run(run())


def test_a_big_exposition_is_parsed_off_the_loop(fake: TritonFake) -> None:
    """~8 MB of a known name (every line goes through the parser): the event loop stays free,
    the poll keeps its bound whether or not the parse finishes in it, and the statistics
    count."""
    fake.extra = many_models(110_000)

    async def run() -> None:
        watcher = ServerWatcher(triton_target(fake), ServerSources(metrics_url=fake.metrics_url))
        _, took, lag = await timed(watcher.start(periodic=False))
        assert took < POLL_LIMIT_S and lag < LAG_LIMIT_S, (took, lag)
        try:
            advance_ten(fake)
            interval, took, lag = await timed(watcher.poll())
            assert took < POLL_LIMIT_S and lag < LAG_LIMIT_S, (took, lag)
            assert interval is not None and interval.requests == 10
        finally:
            await watcher.stop()

    asyncio.run(run())


def test_prometheus_url_that_is_not_prometheus(fake: TritonFake) -> None:
    async def run(url: str) -> None:
        sources = ServerSources(prometheus_url=url, selector='{job="x"}')
        watcher = ServerWatcher(triton_target(fake), sources)
        await watcher.start(periodic=False)
        await watcher.stop()
        assert watcher.summary() is None
        (line,) = watcher.problems()
        assert line.startswith(f'Prometheus {url} {{job="x"}}: ')
        assert "not a Prometheus API answer" in line

    with FaultServer() as server:
        server.add(Rule("garbage"))
        asyncio.run(run(server.url))


def test_periodic_polls_and_series(fake: TritonFake) -> None:
    async def run() -> None:
        watcher = ServerWatcher(
            triton_target(fake), ServerSources(metrics_url=fake.metrics_url), interval_s=0.1
        )
        await watcher.start()
        deadline = time.monotonic() + 30
        while len(watcher.series()) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        advance_ten(fake)
        while sum(i.requests for i in watcher.series()) < 10:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await watcher.stop()
        assert sum(i.requests for i in watcher.series()) == 10
        latest = watcher.latest()
        assert latest is not None and latest.to_dict()["replicas"] == []
        assert await watcher.poll() is None  # stopped

    asyncio.run(run())


def test_sources_are_checked() -> None:
    with pytest.raises(ValueError, match="needs a selector"):
        ServerSources(prometheus_url="http://prom:9090")
    for bad in ('up{job="x"}', "{}", "{job='x'"):
        with pytest.raises(ValueError, match="selector"):
            ServerSources(prometheus_url="http://prom:9090", selector=bad)
    with pytest.raises(ValueError, match="not http"):
        ServerSources(metrics_url="ftp://host/metrics")
    ServerSources(prometheus_url="http://prom:9090", selector='job="x"')
    ServerSources(prometheus_url="http://prom:9090", selector='{job="x", env=~"prod.*"}')


def test_mlserver_names_on_its_recorded_exposition() -> None:
    """MLServer 1.7.1's own `/metrics` (recorded from a real one serving iris: idle, then after
    7 good requests and one it rejected): its counters appear with the first request, and a read
    that found none yet counts them from zero."""
    matchers, problems = load_matchers()
    assert problems == []
    idle = (DATA / "mlserver-1.7.1-idle.metrics").read_bytes()
    after = (DATA / "mlserver-1.7.1-after-7.metrics").read_bytes()
    family, first = parse_exposition(idle, matchers, None, "iris", 0.0, 0)
    assert family is None and "requests" not in first.figures
    family, second = parse_exposition(after, matchers, None, "iris", 2.0, 2_000_000)
    assert family is not None and family.family.shown == "MLServer names"
    assert second.figures == {"requests", "failures", "server", "pending"}

    from engine.remote.server_stats.figures import Deltas, combined, figures_of

    deltas = Deltas()
    assert deltas.advance(first) is None
    growth = deltas.advance(second)
    assert growth is not None
    fields = figures_of(combined(growth.sums), growth.figures, growth.counted, 2.0, 0.0)
    assert fields["requests"] == 7
    assert fields["failures"] == 0
    assert fields["server_ms"] == pytest.approx(0.013613535003969446 / 7 * 1000)
    assert fields["queue_ms"] is None


def test_users_mapping_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = tmp_path / "names.toml"
    names.write_text(
        "[acme]\n"
        'shown = "Acme names"\n'
        'model_label = "m"\n'
        'requests = { metric = "acme_done", labels = { ok = "yes" } }\n'
        'queue = { metric = ["acme_wait_ms", "acme_grpc_wait_ms"], unit = "ms" }\n'
        'pending = { metric = "acme_waiting" }\n'
        "[triton]\n"
        'pending = { metric = "my_triton_pending" }\n'
        "[broken]\n"
        'shown = "Broken"\n'
        'requests = { metric = "has space" }\n'
    )
    monkeypatch.setenv(NAMES_ENV, str(names))
    matchers, problems = load_matchers()
    (problem,) = problems
    assert "[broken]" in problem and "not a Prometheus metric name" in problem
    by_name = {m.name: m for m in matchers}
    assert "my_triton_pending" in by_name["triton"].by_sample
    assert "nv_inference_request_success" in by_name["triton"].by_sample  # the rest kept

    def exposition(done: int, wait_ms: int) -> bytes:
        return (
            f'acme_done_total{{m="a",ok="yes"}} {done}\n'
            f'acme_done_total{{m="a",ok="no"}} 99\n'
            f'acme_done_total{{m="b",ok="yes"}} 77\n'
            f'acme_wait_ms{{m="a"}} {wait_ms}\n'
            f'acme_grpc_wait_ms{{m="a"}} {wait_ms}\n'
            "acme_waiting 5\n"
        ).encode()

    from engine.remote.server_stats.figures import Deltas, combined, figures_of

    _, first = parse_exposition(exposition(10, 100), matchers, None, "a", 0.0, 0)
    family, second = parse_exposition(exposition(14, 120), matchers, None, "a", 1.0, 1)
    assert family is not None and family.name == "acme"
    deltas = Deltas()
    deltas.advance(first)
    growth = deltas.advance(second)
    assert growth is not None
    fields = figures_of(combined(growth.sums), growth.figures, growth.counted, 1.0, 5.0)
    assert fields["requests"] == 4
    assert fields["queue_ms"] == pytest.approx(40 / 4 * 1000 / 1000)  # (20 + 20) ms / 4
    assert fields["pending"] == 5

    monkeypatch.setenv(NAMES_ENV, str(tmp_path / "absent.toml"))
    _, problems = load_matchers()
    assert problems == [f"metric names file {tmp_path / 'absent.toml'}: not found (ignored)"]


def test_kserve_names() -> None:
    """KServe's step histograms (seconds, `model_name`): a predict is a request; the steps are
    the compute stages; it has no queue, no gauge, no failure counter."""
    matchers, _ = load_matchers()

    def exposition(n: int) -> bytes:
        lines = []
        for step, seconds in (("preprocess", 0.001), ("predict", 0.004), ("postprocess", 0.0005)):
            for model, count in (("flowers", n), ("other", 100)):
                name = f"request_{step}_seconds"
                labels = f'{{model_name="{model}"}}'
                lines.append(f'{name}_bucket{{model_name="{model}",le="+Inf"}} {count}')
                lines.append(f"{name}_count{labels} {count}")
                lines.append(f"{name}_sum{labels} {count * seconds}")
        return ("\n".join(lines) + "\n").encode()

    from engine.remote.server_stats.figures import Deltas, combined, figures_of

    _, first = parse_exposition(exposition(5), matchers, None, "flowers", 0.0, 0)
    family, second = parse_exposition(exposition(25), matchers, None, "flowers", 2.0, 2)
    assert family is not None and family.family.shown == "KServe names"
    deltas = Deltas()
    deltas.advance(first)
    growth = deltas.advance(second)
    assert growth is not None
    fields = figures_of(combined(growth.sums), growth.figures, growth.counted, 2.0, None)
    assert fields["requests"] == 20
    assert fields["throughput_per_s"] == 10
    assert fields["compute_input_ms"] == pytest.approx(1.0)
    assert fields["compute_infer_ms"] == pytest.approx(4.0)
    assert fields["compute_output_ms"] == pytest.approx(0.5)
    assert fields["compute_ms"] == pytest.approx(5.5)
    assert fields["queue_ms"] is None and fields["pending"] is None
    assert fields["failures"] is None


def test_stopping_in_the_middle_of_a_poll_keeps_every_source_in_the_last_interval(
    fake: TritonFake,
) -> None:
    """A run ends while a periodic poll is parsing a big exposition: the last poll waits for it
    (bounded) instead of cutting it short, so no source misses the run's last interval (a
    summary taking its count from that source would have lost a second of requests)."""
    fake.extra = many_models(20_000)  # ~1.4 MB: a parse of a few hundred ms, off the loop

    async def run() -> None:
        watcher = ServerWatcher(
            triton_target(fake), ServerSources(metrics_url=fake.metrics_url), interval_s=0.2
        )
        await watcher.start()
        try:
            advance_ten(fake)
            # A periodic poll has fetched the exposition since: it is parsing it now.
            fetched = len(fake.seen["metrics"])
            deadline = time.monotonic() + 30
            while len(fake.seen["metrics"]) == fetched:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
        finally:
            await watcher.stop()
        last = watcher.series()[-1]
        assert last.source == "metrics+oip-stats", (last.source, watcher.problems())
        assert not any("still parsing" in line for line in watcher.problems())
        summary = watcher.summary()
        assert summary is not None and summary["requests"] == 10
        assert sum(i.requests for i in watcher.series()) == 10

    asyncio.run(run())
