"""Starting and finishing runs: a run row goes in when work starts, its summary when it ends."""

from __future__ import annotations

import os
import time
from typing import Any

from engine.ids import new_id
from engine.stats import RunRecorder
from engine.work import compact_json
from storage import queries
from storage.database import Database


async def begin_run(db: Database, kind: str, config: dict[str, Any]) -> RunRecorder:
    run = RunRecorder(new_id(), kind)
    await db.writer.execute(
        queries.INSERT_RUN,
        (run.run_id, kind, compact_json(config), time.time_ns() // 1000, os.getpid()),
    )
    return run


async def end_run(
    db: Database, run: RunRecorder, status: str = "done", extra: dict[str, Any] | None = None
) -> None:
    """Store the run's summary (plus `extra`, e.g. a GUI run's `ui_loop_lag_ms`)."""
    run.finish()
    summary = run.summary().model_dump() | (extra or {})
    await db.writer.execute(
        queries.FINISH_RUN,
        (
            status,
            time.time_ns() // 1000,
            compact_json(summary),
            run.encoded_histogram(),
            run.run_id,
        ),
    )
