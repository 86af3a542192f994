"""`inferdeck serve --workers N` as pre-forked workers: they share the parent's loaded models
(copy-on-write), stop gracefully together, are replaced when one dies, and never outlive a
parent that was killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import BODY, ServeProcess, free_port
from metrics_scrape import scrape, stale_counter


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def _smaps_kib(pid: int) -> dict[str, int]:
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    return {
        line.split(":")[0]: int(line.split()[1])
        for line in rollup
        if line.endswith("kB") and ":" in line
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _wait(condition: object, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(what)


def _predict_anew(url: str) -> str:
    """One /predict on a connection of its own, so the kernel may hand it to either worker."""
    response = httpx.post(f"{url}/predict", json=BODY, headers={"Connection": "close"}, timeout=30)
    assert response.status_code == 200, response.text
    request_id: str = response.json()["request_id"]
    return request_id


def _iris_inferences(url: str) -> int:
    """`inference_count` of the OIP statistics, asked on a connection of its own."""
    response = httpx.get(f"{url}/v2/models/iris/stats", headers={"Connection": "close"}, timeout=30)
    count: int = response.json()["model_stats"][0]["inference_count"]
    return count


@pytest.mark.slow
def test_workers_share_the_parents_loaded_models_and_stop_together(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "serve.log", "--workers", "2")
    try:
        workers = _children(serve.proc.pid)
        assert len(workers) == 2
        # The parent loaded torch and the models before forking: a worker's pages are mostly
        # shared with it. Workers that each imported torch and loaded the models themselves
        # (spawned, not forked) hold most of their memory privately.
        for pid in workers:
            smaps = _smaps_kib(pid)
            private = smaps["Private_Clean"] + smaps["Private_Dirty"]
            assert private < 0.5 * smaps["Rss"], smaps
        ids = [_predict_anew(serve.url) for _ in range(20)]
        # Whichever worker answers, the OIP statistics are the whole service's.
        assert {_iris_inferences(serve.url) for _ in range(8)} == {20}
        # One thread in the parent: nothing half-alive was copied into the workers.
        assert len(list(Path(f"/proc/{serve.proc.pid}/task").iterdir())) == 1
    finally:
        code, log = serve.stop()
    assert code == 0, log
    assert not any(_alive(pid) for pid in workers)
    with sqlite3.connect(serve.db) as conn:
        stored = conn.execute(
            f"SELECT count(*) FROM requests WHERE status = 'ok' AND request_id IN "
            f"({', '.join('?' for _ in ids)})",
            ids,
        ).fetchone()[0]
        runs = conn.execute(
            "SELECT count(*), min(status) FROM runs WHERE kind = 'serve'"
        ).fetchone()
        answered_by = conn.execute(
            "SELECT count(DISTINCT run_id) FROM requests WHERE status = 'ok'"
        ).fetchone()[0]
    assert stored == 20
    assert answered_by == 2  # both workers took requests: the figures above were summed
    assert runs == (2, "done")  # each worker drained and closed its run


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_a_killed_parent_takes_its_workers(
    tmp_path: Path,
) -> None:
    # A parent killed by SIGKILL cannot remove the metrics folder it made: one of the test's.
    folder = tmp_path / "multiproc"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    serve = ServeProcess(tmp_path / "serve.log", "--workers", "2", env=env)
    workers = _children(serve.proc.pid)
    try:
        for _ in range(10):
            _predict_anew(serve.url)
        before = _iris_inferences(serve.url)
        assert before == 10
        os.kill(workers[0], signal.SIGKILL)
        _wait(
            lambda: (
                len(set(_children(serve.proc.pid)) - set(workers)) == 1
                and len(_children(serve.proc.pid)) == 2
            ),
            60,
            "no replacement worker",
        )
        _wait(serve.ready, 120, "not ready again after a worker died")
        replaced = _children(serve.proc.pid)
        for _ in range(10):
            _predict_anew(serve.url)
        # The replacement took over the dead worker's block: counts never go back.
        assert {_iris_inferences(serve.url) for _ in range(8)} == {before + 10}
    finally:
        # SIGKILL: the parent cannot forward anything; each worker hears of it from Linux.
        serve.proc.kill()
        serve.proc.wait(timeout=30)
    _wait(lambda: not any(_alive(pid) for pid in replaced), 60, "workers outlived the parent")


@pytest.mark.slow
def test_one_worker_ignores_an_inherited_metrics_folder(tmp_path: Path) -> None:
    """One process keeps its metrics in memory: an earlier run's values in a folder from the
    environment are neither counted nor touched."""
    folder = tmp_path / "multiproc"
    folder.mkdir()
    stale = stale_counter(folder)  # an earlier run's 1,000 iris requests
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    serve = ServeProcess(tmp_path / "serve.log", env=env)
    try:
        for _ in range(5):
            serve.predict()
        found = scrape(serve.url)
    finally:
        code, log = serve.stop()
    assert code == 0, log
    assert found.value("inferdeck_requests_total", model="iris", outcome="ok") == 5
    assert found.value("inferdeck_model_ready", model="iris") == 1
    assert stale.exists()


def test_workers_refuse_a_metrics_folder_holding_other_files(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every `*.db` in the folder is read as metrics at each scrape: a user's own file there
    would break them all, and is not the service's to delete."""
    folder = tmp_path / "multiproc"
    folder.mkdir()
    mine = folder / "mine.db"
    mine.write_bytes(b"the user's own file")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    result = cli("serve", "--port", str(free_port()), "--workers", "2", timeout=90)
    assert result.code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "mine.db" in result.stderr, result.stderr
    assert mine.read_bytes() == b"the user's own file"


@pytest.mark.slow
def test_two_services_cannot_share_one_chosen_metrics_folder(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second would clear the first one's values and its figures would silently stop."""
    folder = tmp_path / "multiproc"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    first = ServeProcess(tmp_path / "first.log", "--workers", "2")
    try:
        first.predict()
        second = cli("serve", "--port", str(free_port()), "--workers", "2", timeout=90)
        assert second.code == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "in use" in second.stderr, second.stderr
        assert scrape(first.url).value("inferdeck_requests_total", model="iris", outcome="ok") == 1
    finally:
        code, log = first.stop()
    assert code == 0, log
