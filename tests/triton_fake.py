"""A Triton-shaped server for tests: real uvicorn on 127.0.0.1, counters a test advances.

Like Triton it answers on two ports: the inference port (`/v2/health/*`,
`/v2/models/{m}/stats` in Triton's JSON shape, one entry per version) and the metrics port
(`/metrics` with Triton's `nv_inference_*` names, in microseconds, labelled `model` and
`version`). `metrics_mode` breaks the exposition on purpose: `missing` leaves out every name but
the success counter. Headers each port received are kept, to check where credentials went.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import uvicorn
from live_server import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
# Triton's metric names per stage (durations are counters of µs).
_DURATIONS = {
    "success": "nv_inference_request_duration_us",
    "queue": "nv_inference_queue_duration_us",
    "compute_input": "nv_inference_compute_input_duration_us",
    "compute_infer": "nv_inference_compute_infer_duration_us",
    "compute_output": "nv_inference_compute_output_duration_us",
}


@dataclass
class VersionStats:
    """One model version's cumulative counters, as Triton keeps them."""

    count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    ns: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    inferences: int = 0
    executions: int = 0


class TritonFake:
    """Two uvicorn servers in threads; `advance` adds to a model version's counters."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, VersionStats]] = {}
        self.pending: dict[str, float] = {}
        self.metrics_mode = "ok"
        self.extra = ""  # more exposition text, e.g. `many_models(n)`
        self.seen: dict[str, list[dict[str, str]]] = {"main": [], "metrics": []}
        self._lock = threading.Lock()
        self.main = _Uvicorn(
            Starlette(
                routes=[
                    Route("/v2/health/ready", self._ready),
                    Route("/v2/models/stats", self._all_stats),
                    Route("/v2/models/{model}/stats", self._stats),
                ]
            )
        )
        self.metrics = _Uvicorn(Starlette(routes=[Route("/metrics", self._metrics)]))
        self.url = self.main.url
        self.metrics_url = f"{self.metrics.url}/metrics"

    def __enter__(self) -> TritonFake:
        self.main.start()
        self.metrics.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.main.stop()
        self.metrics.stop()

    def advance(
        self,
        model: str,
        version: str = "1",
        *,
        success: int = 0,
        fail: int = 0,
        us: dict[str, int] | None = None,
        inferences: int = 0,
        executions: int = 0,
    ) -> None:
        """Count `success` and `fail` requests; `us` adds microseconds per stage (`success` is
        the whole request's time)."""
        with self._lock:
            stats = self.models.setdefault(model, {}).setdefault(version, VersionStats())
            stats.count["success"] += success
            stats.count["fail"] += fail
            for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
                stats.count[stage] += success
            for stage, value in (us or {}).items():
                stats.ns[stage] += value * 1000
            stats.inferences += inferences
            stats.executions += executions

    def restart(self) -> None:
        """Every counter back to zero, as a restarted Triton's are."""
        with self._lock:
            self.models = {m: {v: VersionStats() for v in vs} for m, vs in self.models.items()}

    # ---------------------------------------------------------------- routes

    async def _ready(self, request: Request) -> Response:
        self.seen["main"].append(dict(request.headers))
        return JSONResponse({})

    def _entry(self, model: str, version: str, stats: VersionStats) -> dict[str, object]:
        return {
            "name": model,
            "version": version,
            "last_inference": int(time.time() * 1000),
            "inference_count": stats.inferences,
            "execution_count": stats.executions,
            "inference_stats": {
                stage: {"count": stats.count[stage], "ns": stats.ns[stage]} for stage in STAGES
            },
            "batch_stats": [],
        }

    async def _stats(self, request: Request) -> Response:
        self.seen["main"].append(dict(request.headers))
        model = request.path_params["model"]
        with self._lock:
            versions = self.models.get(model)
            if versions is None:
                return JSONResponse({"error": f"no model {model}"}, status_code=400)
            entries = [self._entry(model, v, s) for v, s in versions.items()]
        return JSONResponse({"model_stats": entries})

    async def _all_stats(self, request: Request) -> Response:
        self.seen["main"].append(dict(request.headers))
        with self._lock:
            entries = [self._entry(m, v, s) for m, vs in self.models.items() for v, s in vs.items()]
        return JSONResponse({"model_stats": entries})

    async def _metrics(self, request: Request) -> Response:
        self.seen["metrics"].append(dict(request.headers))
        lines: list[str] = ["# A GPU figure Triton also exports, which nobody maps.", ""]
        lines.append('nv_gpu_utilization{gpu_uuid="GPU-1"} 0.5')
        with self._lock:
            for model, versions in self.models.items():
                for version, stats in versions.items():
                    labels = f'{{model="{model}",version="{version}"}}'
                    lines.append(f"nv_inference_request_success{labels} {stats.count['success']}")
                    if self.metrics_mode == "missing":
                        continue
                    lines.append(f"nv_inference_request_failure{labels} {stats.count['fail']}")
                    lines.append(f"nv_inference_count{labels} {stats.inferences}")
                    lines.append(f"nv_inference_exec_count{labels} {stats.executions}")
                    for stage, name in _DURATIONS.items():
                        lines.append(f"{name}{labels} {stats.ns[stage] // 1000}")
                if self.metrics_mode != "missing":
                    pending = self.pending.get(model, 0)
                    lines.append(
                        f'nv_inference_pending_request_count{{model="{model}",version="1"}} '
                        f"{pending}"
                    )
        header = (
            "# HELP nv_inference_request_success Number of successful inference requests\n"
            "# TYPE nv_inference_request_success counter\n"
        )
        return PlainTextResponse(header + "\n".join(lines) + "\n" + self.extra)


def many_models(count: int) -> str:
    """`count` more success counters of other models: a large exposition of a known name."""
    return "".join(
        f'nv_inference_request_success{{model="m{i}",version="1"}} {i}\n' for i in range(count)
    )


class _Uvicorn:
    """One Starlette app served by uvicorn in a daemon thread on a free port."""

    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_keep_alive=120,  # see LiveServer: a stalled test process must not reset it
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited at start"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
