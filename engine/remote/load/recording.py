"""Recording a load run: every request's row to the store, the run's HDR histogram and summary,
and the live snapshots a view draws.

Per request the work is kept small (counters, one row tuple, one list append); rows go to the
database's group-commit writer in chunks, never one transaction or await per row.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from engine.ids import new_id
from engine.remote.client import Exchange
from engine.remote.load.snapshot import LoadSnapshot
from engine.remote.load.state import RunState
from engine.remote.outcome import CLIENT_ROW_SUFFIX, client_row
from engine.remote.targets import Target
from engine.runs import begin_run, end_run
from engine.stats import LiveStats, RunRecorder
from storage import queries
from storage.database import Database

CLIENT_ID = "load"
SOURCE = "load"
FLUSH_ROWS = 500  # rows handed to the writer at once (a timer hands over the rest)
FLUSH_EVERY_S = 0.05

_now = time.perf_counter_ns


@dataclass(frozen=True)
class LoadResult:
    """A finished run as `LoadRunner.run` returns it: its ID, stored summary and histogram."""

    run_id: str
    summary: dict[str, Any]
    histogram: HdrHistogram


class Recorder:
    """Counts, stores and summarises one load run's requests; made by `LoadRunner`, fed by its
    sender (`record`, once per request)."""

    def __init__(
        self,
        target: Target,
        db: Database | None,
        state: RunState,
        summary_extra: Callable[[], dict[str, Any] | Awaitable[dict[str, Any]]] | None,
    ) -> None:
        self.target = target
        self.db = db
        self._state = state
        # Called once as the run ends; what it returns (or, if awaitable, gives) joins the
        # stored summary: the desktop app's `ui_loop_lag_ms` for the run's own window, which
        # its GUI thread measures while this runs on a thread of its own.
        self._summary_extra = summary_extra
        self._live = LiveStats(window_s=5)
        self.run: RunRecorder | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._started_ns = 0
        self._base_us = 0  # wall clock (µs) = this + a perf_counter reading in µs
        # The run's start on the live window's clock: rates are measured over the part of the
        # window the run has lived (a full window from the first second read ~0, then climbed).
        self._started_mono: float | None = None

    async def begin(self, config: dict[str, Any]) -> int:
        """Open the run (stored as kind "load" when there is a database); its start, in ns."""
        if self.db is not None:
            self.run = await begin_run(self.db, "load", config)
        else:
            self.run = RunRecorder(new_id(), "load")
        self.run.started_ns = self._started_ns = _now()
        self._started_mono = time.monotonic()
        self._base_us = time.time_ns() // 1000 - self._started_ns // 1000
        return self._started_ns

    def record(
        self,
        request_id: str,
        traceparent: str,
        input_json: str,
        origin_ns: int,
        ex: Exchange,
        spans: list[tuple[Any, ...]],
    ) -> None:
        """Count one judged request (`engine.remote.outcome.judge`) and queue its row; its
        latency counts from `origin_ns` (`engine.remote.load.schedule.origin_ns`)."""
        run = self.run
        assert run is not None
        error = ex.error
        status = "ok" if error is None else "failed"
        latency_us = (ex.end_ns - origin_ns) // 1000
        state = self._state
        state.completed += 1
        run.accepted += 1
        run.record(status, latency_us)
        if error is not None:
            state.errors[error] += 1
        self._live.record(status, latency_us, spans)
        if self.db is None:
            return
        base_us = self._base_us
        target = self.target
        self._rows.append(
            client_row(
                request_id + CLIENT_ROW_SUFFIX,
                run.run_id,
                SOURCE,
                target.name,
                target.model,
                CLIENT_ID,
                status,
                base_us + origin_ns // 1000,
                base_us + ex.end_ns // 1000,
                latency_us,
                input_json,
                traceparent,
                ex,
                spans,
            )
        )
        if len(self._rows) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Hand the queued rows to the database's writer (not awaited: it commits in groups)."""
        if self._rows and self.db is not None:
            rows, self._rows = self._rows, []
            self.db.writer.add(queries.UPSERT_REQUEST, rows)

    async def flush_often(self) -> None:
        """Hands over a partial chunk now and then, so views see rows while a slow run goes."""
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            self.flush()

    def traffic_ended(self) -> None:
        """The last request is done: the run's duration ends here, whatever follows (the
        server's last statistics poll, the final writes)."""
        if self.run is not None:
            self.run.finish()

    async def finish(self, status: str, server: dict[str, Any] | None = None) -> dict[str, Any]:
        """End the run as `status`, stored with its summary (joined by `server`: the server's
        own figures, `engine.remote.load.server_side`); what joins the summary returned."""
        run = self.run
        assert run is not None
        state = self._state
        summary_extra: dict[str, Any] = {
            "errors": dict(state.errors),
            "sent": state.sent,
            "not_sent": state.not_sent,
            **(server or {}),
        }
        if self._summary_extra is not None:
            extra = self._summary_extra()
            if inspect.isawaitable(extra):
                extra = await extra
            summary_extra |= extra
        if self.db is not None:
            await asyncio.shield(end_run(self.db, run, status, summary_extra))
        else:
            run.finish()
        return summary_extra

    def result(self, summary_extra: dict[str, Any]) -> LoadResult:
        """The finished run's result, its summary joined by `summary_extra` (from `finish`)."""
        run = self.run
        assert run is not None
        summary = run.summary().model_dump() | summary_extra
        return LoadResult(run.run_id, summary, run.histogram)

    def snapshot(self, server: dict[str, Any] | None = None) -> LoadSnapshot:
        """The run's figures now, over the live window for rates and percentiles; `server`:
        the server's own latest interval (`engine.remote.load.server_side.ServerSide.live`)."""
        state = self._state
        live = self._live.snapshot(
            queue_depth=0, in_flight=state.in_flight, since=self._started_mono
        )
        run = self.run
        started = self._started_ns
        return LoadSnapshot(
            elapsed_s=(_now() - started) / 1e9 if started else 0.0,
            sent=state.sent,
            in_flight=state.in_flight,
            completed=state.completed,
            ok=run.ok if run is not None else 0,
            failed=run.failed if run is not None else 0,
            errors=dict(state.errors),
            throughput_per_s=live.throughput_per_s,
            errors_per_s=live.errors_per_s,
            p50_ms=live.p50_ms,
            p99_ms=live.p99_ms,
            stage_ms=live.stage_ms,
            done=state.done,
            server=server,
        )
