"""`inferdeck load` against a real MLServer 1.7.1 serving the built-in iris `model.pt2` (the
runtime in bench/mlserver_runtime, in `.venv-mlserver`, which `make test` builds), its
Prometheus metrics on their own port: the run's `server` object reads MLServer's own names and
counts exactly the requests the client sent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import free_port

from engine.cli.main import main

REPO = Path(__file__).resolve().parents[2]
MLSERVER = REPO / ".venv-mlserver" / "bin" / "mlserver"
RUNTIME = REPO / "bench" / "mlserver_runtime"
MODEL_DIR = REPO / "engine" / "models" / "builtin" / "iris"
READY_S = 180.0  # MLServer starts its inference worker in a process of its own


class MLServer:
    """`mlserver start` on free 127.0.0.1 ports (HTTP, gRPC, metrics) in a folder of its own."""

    def __init__(self, folder: Path) -> None:
        assert MLSERVER.exists(), f"{MLSERVER} is missing: `make test` builds .venv-mlserver"
        shutil.copy(RUNTIME / "iris_runtime.py", folder)
        self.port, self.metrics_port = free_port(), free_port()
        settings = json.loads((RUNTIME / "settings.json").read_text())
        settings |= {
            "http_port": self.port,
            "grpc_port": free_port(),
            "metrics_port": self.metrics_port,
            "parallel_workers": 1,
        }
        (folder / "settings.json").write_text(json.dumps(settings))
        model = json.loads((RUNTIME / "model-settings.json").read_text())
        model["parameters"]["uri"] = str(MODEL_DIR)
        (folder / "model-settings.json").write_text(json.dumps(model))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "mlserver.log"
        # Nothing of this shell's MLSERVER_* or INFERDECK_* settings reaches it.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "INFERDECK_"))}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(MLSERVER), "start", str(folder)],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mlserver exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/v2/models/iris/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"mlserver not ready in {READY_S:.0f} s: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServer]:
    server = MLServer(tmp_path_factory.mktemp("mlserver"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_load_reads_mlservers_own_metrics(
    mlserver: MLServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = f"http://127.0.0.1:{mlserver.metrics_port}/metrics"
    argv = ["load", mlserver.url, "--protocol", "oip", "--model", "iris", "--concurrency", "2"]
    argv += ["--requests", "60", "--metrics-url", metrics, "--db", str(tmp_path / "l.db")]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    server = summary["server"]
    assert summary["ok"] == 60 and server["requests"] == 60 and server["failures"] == 0
    assert "MLServer names" in " ".join(server["in_use"])
    # MLServer measures the whole inference, and counts requests in progress; it has no
    # queue or stage times, and says so.
    assert server["server_ms"] > 0 and server["pending_max"] is not None
    assert "queue_ms" in server["missing"] and server["queue_ms"] is None
    # MLServer offers no OIP statistics extension: looked for, found missing, not used.
    assert "oip-stats" not in server["source"]
