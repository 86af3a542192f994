"""`GET /metrics` for real: requests through uvicorn, the text parsed as Prometheus parses it.

One worker in this process (`LiveServer`), and `inferdeck serve --workers 2` as its own process
(`ServeProcess`), where prometheus-client's multiprocess mode must add up every worker's figures
whichever worker answers the scrape, and keep a dead worker's counts when it is replaced.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from live_server import BODY, ROW, LiveServer, ServeProcess
from metrics_scrape import Scrape, scrape, stale_counter

from engine.server import ServerSettings

MB = 1 << 20
# Bounds a wait for something a loaded 2-core machine does in seconds; a fast one returns at once.
DEADLINE_S = 60.0
BAD_ROW = {**BODY, "input_payload": {**ROW, "sepal_width": "wide"}}
# One iris row as an Open Inference Protocol request: a tensor per input field.
OIP_ONE_ROW = {
    "inputs": [
        {"name": name, "datatype": "FP32", "shape": [1, 1], "data": [value]}
        for name, value in ROW.items()
    ]
}
STAGES = ("queue", "inference", "write")

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], seen: Callable[[], object]) -> T:
    """Poll `probe` until it returns something other than None, for at most `DEADLINE_S`;
    a timeout says what `seen` last saw."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last seen: {seen()}"
        time.sleep(0.1)


def predict_on_new_connections(url: str, count: int) -> None:
    """`count` valid `POST /predict`, each over a new connection (so any worker may take it)."""
    for _ in range(count):
        response = httpx.post(f"{url}/predict", json=BODY, timeout=30)
        assert response.status_code == 200, response.text


def memory_pids(found: Scrape) -> dict[int, float]:
    """The per-worker memory gauge: pid -> resident bytes."""
    series = found.find("inferdeck_worker_resident_memory_bytes")
    return {int(s.labels["pid"]): s.value for s in series}


def serve_runs(db: Path) -> dict[int, str]:
    """The serve runs in the database: worker pid -> run status."""
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT owner_pid, status FROM runs WHERE kind = 'serve'")
            return {int(pid): status for pid, status in rows}
    except sqlite3.OperationalError:  # the first worker's migration has not committed yet
        return {}


def served_by(db: Path) -> dict[int, int]:
    """Requests stored `ok`, counted by the pid of the worker whose run stored them."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT runs.owner_pid, count(*) FROM requests JOIN runs USING (run_id) "
            "WHERE requests.status = 'ok' GROUP BY runs.owner_pid"
        )
        return {int(pid): n for pid, n in rows}


def live_workers(serve: ServeProcess, count: int) -> dict[int, float]:
    """Wait until `count` workers each report their memory; their pids -> bytes. The gauge's
    pids must be exactly the serve runs the database holds as running."""

    seen: dict[str, object] = {}

    def probe() -> dict[int, float] | None:
        pids = memory_pids(scrape(serve.url))
        runs = serve_runs(serve.db)
        seen.update(memory=pids, runs=runs)
        running = {pid for pid, status in runs.items() if status == "running"}
        return pids if len(pids) == count and set(pids) == running else None

    return wait_for(f"{count} workers in the memory gauge and the runs table", probe, seen.copy)


# -- one worker -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(ServerSettings(db_path=tmp_path_factory.mktemp("metrics") / "m.db"))
    live.start()
    yield live
    live.stop()


def test_one_worker_counts_every_outcome_and_stage(server: LiveServer) -> None:
    ok, bad = 7, 3
    stranger = f"nope-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(ok):
            assert client.post("/predict", json=BODY).status_code == 200
        for _ in range(bad):
            response = client.post("/predict", json=BAD_ROW)
            assert response.status_code == 422, response.text
        oip = client.post("/v2/models/iris/infer", json=OIP_ONE_ROW)
        assert oip.status_code == 200, oip.text
        # A caller naming models that do not exist: stored as rejections, but no series.
        unknown = client.post("/predict", json={**BODY, "model": stranger})
        assert unknown.status_code == 404, unknown.text
        unknown_oip = client.post(f"/v2/models/{stranger}/infer", json=OIP_ONE_ROW)
        assert unknown_oip.status_code == 404, unknown_oip.text
    with sqlite3.connect(server.db_path) as conn:
        stored = dict(conn.execute("SELECT status, count(*) FROM requests GROUP BY status"))
    assert stored["ok"] == ok + 1 and stored["rejected"] >= bad + 1  # what the metrics count

    found = scrape(server.url)
    media_type, _, params = found.content_type.partition(";")
    assert media_type == "text/plain"  # Prometheus' text format, not OpenMetrics
    assert "version=" in params
    ran = ok + 1  # the OIP row ran too
    assert found.value("inferdeck_requests_total", model="iris", outcome="ok") == ran
    assert found.value("inferdeck_requests_total", model="iris", outcome="rejected") == bad
    assert not found.find("inferdeck_requests_total", model="iris", outcome="failed")
    assert found.types["inferdeck_requests"] == "counter"

    assert found.types["inferdeck_request_duration_seconds"] == "histogram"
    assert found.value("inferdeck_request_duration_seconds_count", model="iris") == ran
    assert found.value("inferdeck_request_duration_seconds_sum", model="iris") > 0
    # The last bucket holds every observation, and buckets never decrease.
    buckets = found.find("inferdeck_request_duration_seconds_bucket", model="iris")
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == ran
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)
    for stage in STAGES:
        name = f"inferdeck_{stage}_duration_seconds"
        assert found.types[name] == "histogram"
        assert found.value(f"{name}_count", model="iris") == ran, stage
        assert found.value(f"{name}_sum", model="iris") >= 0, stage
    assert found.value("inferdeck_inference_duration_seconds_sum", model="iris") > 0
    # No digits request ran: its histograms are there, at zero.
    assert found.value("inferdeck_request_duration_seconds_count", model="digits") == 0

    batches = found.value("inferdeck_batch_size_count", model="iris")
    assert 1 <= batches <= ran
    assert found.value("inferdeck_batch_size_sum", model="iris") == ran  # rows run

    assert found.value("inferdeck_model_ready", model="iris") == 1
    assert found.value("inferdeck_model_ready", model="digits") == 1
    (build,) = found.find("inferdeck_build_info")
    assert build.value == 1 and build.labels["version"]
    assert found.value("inferdeck_pending_requests") >= 0
    assert found.value("inferdeck_worker_resident_memory_bytes") > 10 * MB

    strangers = [s for s in found.samples if stranger in s.labels.values()]
    assert strangers == [], "a caller must not be able to add series"
    # ...but its requests are counted, under one label for every model not served.
    assert found.value("inferdeck_requests_total", model="_other", outcome="rejected") == 1


def test_metrics_is_not_in_the_openapi_document(server: LiveServer) -> None:
    document = httpx.get(f"{server.url}/openapi.json", timeout=30)
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert "/predict" in paths  # the document is the real one
    assert not [path for path in paths if "metrics" in path]


def test_no_metrics_answers_404(tmp_path: Path) -> None:
    live = LiveServer(ServerSettings(db_path=tmp_path / "quiet.db", metrics=False))
    live.start()
    try:
        assert httpx.post(f"{live.url}/predict", json=BODY, timeout=30).status_code == 200
        response = httpx.get(f"{live.url}/metrics", timeout=30)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    finally:
        live.stop()


# -- serve --workers 2 ----------------------------------------------------------------------


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[ServeProcess, Path]]:
    """`serve --workers 2` writing its metrics to a folder chosen here (with a stale file)."""
    folder = tmp_path / "prom"
    folder.mkdir()
    stale = stale_counter(folder)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    serve = ServeProcess(tmp_path / "serve.log", "--workers", "2", env=env)
    try:
        assert not stale.exists(), "serve must empty the metrics folder of an earlier run"
        yield serve, folder
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait(timeout=30)


@pytest.mark.slow
def test_two_workers_add_up_on_every_scrape(workers: tuple[ServeProcess, Path]) -> None:
    serve, _folder = workers
    sent = 60
    predict_on_new_connections(serve.url, sent)
    pids = live_workers(serve, 2)
    served = served_by(serve.db)
    assert sum(served.values()) == sent
    assert set(served) == set(pids), f"both workers answered: {served}"  # else nothing to add
    for _ in range(10):
        found = scrape(serve.url)
        assert found.value("inferdeck_requests_total", model="iris", outcome="ok") == sent
        assert found.value("inferdeck_request_duration_seconds_count", model="iris") == sent
        assert found.value("inferdeck_batch_size_sum", model="iris") == sent
        assert found.value("inferdeck_model_ready", model="iris") == 1
        assert found.value("inferdeck_model_ready", model="digits") == 1
        memory = memory_pids(found)
        assert set(memory) == set(pids)
        assert all(rss > 10 * MB for rss in memory.values()), memory
        assert found.find("inferdeck_pending_requests")
        assert found.find("inferdeck_build_info")[0].labels["version"]
    code, log = serve.stop()
    assert code == 0, log


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_counts_kept(
    workers: tuple[ServeProcess, Path],
) -> None:
    serve, folder = workers
    before = 30
    predict_on_new_connections(serve.url, before)
    pids = live_workers(serve, 2)
    served = served_by(serve.db)
    # The worker that stored the most requests: its counts live only in its files now.
    victim = max(pids, key=lambda pid: served.get(pid, 0))
    assert served.get(victim, 0) > 0
    os.kill(victim, signal.SIGKILL)

    seen: dict[str, object] = {"killed": victim}

    def replaced() -> dict[int, float] | None:
        if not serve.ready():
            return None
        memory = seen["memory"] = memory_pids(scrape(serve.url))
        return memory if len(memory) == 2 and victim not in memory else None

    memory = wait_for("a worker to replace the killed one", replaced, seen.copy)
    (newcomer,) = set(memory) - set(pids)
    assert all(rss > 10 * MB for rss in memory.values()), memory
    with open(f"/proc/{newcomer}/stat") as stat:
        assert int(stat.read().rsplit(")", 1)[1].split()[1]) == serve.proc.pid  # serve's child
    # The dead worker's live gauges are gone; its counters and histograms stay.
    assert not list(folder.glob(f"gauge_live*_{victim}.db"))
    assert (folder / f"counter_{victim}.db").exists()
    found = scrape(serve.url)
    assert found.value("inferdeck_requests_total", model="iris", outcome="ok") == before
    assert found.value("inferdeck_request_duration_seconds_count", model="iris") == before
    assert found.value("inferdeck_model_ready", model="iris") == 1

    after = 10
    predict_on_new_connections(serve.url, after)
    for _ in range(5):
        found = scrape(serve.url)
        total = found.value("inferdeck_requests_total", model="iris", outcome="ok")
        assert total == before + after
        assert set(memory_pids(found)) == set(memory)
    code, log = serve.stop()
    assert code == 0, log
    assert f"worker {victim} exited" in log
