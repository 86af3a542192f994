"""Starting and finishing runs: a run row goes in when work starts, its summary when it ends;
and what a run was, in words (`run_name`, `run_settings`) for the Runs view and Compare."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from engine.ids import new_id
from engine.stats import RunRecorder
from engine.work import compact_json
from storage import queries
from storage.database import Database

# Words for the kinds of run that have no file or target to name them by.
_KIND_NAMES = {"gui": "app session", "serve": "serve", "load": "load"}


async def begin_run(db: Database, kind: str, config: dict[str, Any]) -> RunRecorder:
    run = RunRecorder(new_id(), kind)
    await db.writer.execute(
        queries.INSERT_RUN,
        (run.run_id, kind, compact_json(config), time.time_ns() // 1000, os.getpid()),
    )
    return run


async def end_run(
    db: Database,
    run: RunRecorder,
    status: str = "done",
    extra: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    """Store the run's summary (plus `extra`, e.g. a GUI run's `ui_loop_lag_ms`), and add
    `config` to its settings: what was only known once the run ran (a file's model)."""
    run.finish()
    summary = run.summary().model_dump() | (extra or {})
    await db.writer.execute(
        queries.FINISH_RUN,
        (
            status,
            time.time_ns() // 1000,
            compact_json(summary),
            run.encoded_histogram(),
            compact_json(config or {}),
            run.run_id,
        ),
    )


def _clock(us: int) -> str:
    at = dt.datetime.fromtimestamp(us / 1e6)
    return at.strftime("%H:%M" if at.date() == dt.date.today() else "%Y-%m-%d %H:%M")


def _files(config: dict[str, Any]) -> list[str]:
    files = config.get("files")
    return [str(f) for f in files] if isinstance(files, list) else []


def run_name(kind: str, config: dict[str, Any], started_us: int) -> str:
    """A run as a person names it: its file ("iris.csv · 14:02"), its target
    ("load → web · 14:10"), or what it was ("app session · 09:30")."""
    files = [Path(f).name for f in _files(config)]
    if files:
        what = files[0] + (f" +{len(files) - 1} more" if len(files) > 1 else "")
    elif kind == "load":
        what = f"load → {config.get('target') or config.get('base_url') or '?'}"
    else:
        what = _KIND_NAMES.get(kind, kind)
    return f"{what} · {_clock(started_us)}"


def _number(value: float) -> str:
    return f"{value:,g}" if value != int(value) else f"{int(value):,}"


def run_settings(kind: str, config: dict[str, Any]) -> dict[str, str]:
    """What a run was asked to do, as ordered (setting, value) words: its target, rate or
    users, duration, files and model. Only the settings its config holds are named."""
    out: dict[str, str] = {}
    if kind == "load":
        out["target"] = str(config.get("target") or "?")
        if config.get("base_url"):
            out["URL"] = str(config["base_url"])
        if config.get("protocol"):
            out["protocol"] = str(config["protocol"])
    elif kind in ("files", "predict", "gui", "bench-open-loop"):
        out["target"] = "local engine"
    plan: dict[str, Any] = config["plan"] if isinstance(config.get("plan"), dict) else {}
    # A bench run keeps its rate and length at the top level.
    rate = plan.get("rate", config.get("rate"))
    if rate is not None:
        out["rate"] = f"{_number(float(rate))}/s"
    if plan.get("concurrency") is not None:
        out["concurrency"] = f"{plan['concurrency']:,} users"
    duration = plan.get("duration_s", config.get("seconds"))
    if duration is not None:
        out["duration"] = f"{_number(float(duration))} s"
    if plan.get("requests") is not None:
        out["requests"] = f"{plan['requests']:,}"
    if plan.get("ramp_s"):
        out["ramp"] = f"{_number(float(plan['ramp_s']))} s"
    files = _files(config)
    if files:
        out["file" if len(files) == 1 else "files"] = ", ".join(files)
    if config.get("payloads"):
        count = config.get("payload_count")
        out["payloads"] = str(config["payloads"]) + (f" ({count:,})" if count else "")
    models = config.get("models")
    model = config.get("model") or (", ".join(map(str, models)) if isinstance(models, list) else "")
    if model:
        out["model"] = str(model)
    elif files:
        out["model"] = "chosen per file"
    if config.get("client_id"):
        out["client"] = str(config["client_id"])
    return out
