"""The Runs view's detail text: everything stored about one run (its name and settings, summary,
latency, UI loop lag, config, file jobs) as plain lines, from `storage.queries.run_detail`.
"""

from __future__ import annotations

import json
from typing import Any

from engine.runs import run_name, run_settings
from gui.shared.when import MISSING, when_text
from storage import queries


def ms_text(value: Any) -> str:
    """Milliseconds to two decimals, or `MISSING`."""
    return MISSING if value is None else f"{value:.2f}"


def server_lines(server: dict[str, Any]) -> list[str]:
    """The server's own figures over a load run, total and per replica, or what was missing."""
    if server.get("source") is None:
        missing = "; ".join(server.get("missing") or []) or "no source answered"
        return [f"server: no statistics ({missing})"]
    lines = [f"server, from {', '.join(server.get('in_use') or [server['source']])}:"]

    def figures(f: dict[str, Any]) -> str:
        batch = f.get("batch_size_mean")
        pending = f.get("pending_max")
        return (
            f"{f.get('requests') or 0:,} requests · queue {ms_text(f.get('queue_ms'))} ms · "
            f"compute {ms_text(f.get('compute_ms'))} ms · pending max "
            f"{MISSING if pending is None else f'{pending:g}'} · batch "
            f"{MISSING if batch is None else f'{batch:.2f}'}"
        )

    lines.append("  " + figures(server))
    lines.extend(
        f"  {replica.get('instance', '?')}: " + figures(replica)
        for replica in server.get("replicas") or []
    )
    if server.get("missing"):
        lines.append("  missing: " + "; ".join(server["missing"]))
    return lines


def describe_run(detail: queries.RunDetail) -> str:
    """The detail pane's text: everything stored about one run, as plain lines."""
    run, counts, jobs = detail.run, detail.status_counts, detail.file_jobs
    lines = [run_name(run.kind, run.config, run.started_us), f"run {run.run_id}"]
    lines.append(f"kind {run.kind} · status {run.status}")
    settings = run_settings(run.kind, run.config)
    if settings:
        lines.append("settings: " + " · ".join(f"{k} {v}" for k, v in settings.items()))
    lines.append(f"started {when_text(run.started_us)} · ended {when_text(run.ended_us)}")
    lines.append(
        "requests: " + (", ".join(f"{n:,} {s}" for s, n in sorted(counts.items())) or "none")
    )
    summary = run.summary
    if summary is None:
        if run.status == "running":
            lines.append("still running: its summary is written when it ends")
        else:
            lines.append(f"no summary (the run ended {run.status})")
    else:
        lines.append(
            f"accepted {summary.get('accepted', 0):,} · ok {summary.get('ok', 0):,} · "
            f"rejected {summary.get('rejected', 0):,} · failed {summary.get('failed', 0):,}"
        )
        if summary.get("rows_done") is not None:  # file runs: how far their files got
            total = summary.get("rows_total")
            lines.append(
                f"rows done {summary['rows_done']:,} of "
                f"{MISSING if total is None else f'{total:,}'} · ended {run.status}"
            )
            lines.extend(f"error: {e}" for e in summary.get("errors") or [])
        duration = summary.get("duration_s")
        rate = summary.get("throughput_per_s")
        lines.append(
            f"duration {MISSING if duration is None else f'{duration:,.2f} s'} · "
            f"throughput {MISSING if rate is None else f'{rate:,.1f}'}/s"
        )
        lat = summary.get("latency_ms") or {}
        lines.append(
            f"latency ms: p50 {ms_text(lat.get('p50'))}  p90 {ms_text(lat.get('p90'))}  "
            f"p99 {ms_text(lat.get('p99'))}  p99.9 {ms_text(lat.get('p999'))}  "
            f"max {ms_text(lat.get('max'))}"
        )
        server = summary.get("server")
        if server:
            lines.extend(server_lines(server))
        lag = summary.get("ui_loop_lag_ms")
        if lag:
            lines.append(
                f"UI loop lag ms: p50 {ms_text(lag.get('p50'))}  p99 {ms_text(lag.get('p99'))}  "
                f"max {ms_text(lag.get('max'))}"
            )
    lines.append("config: " + (json.dumps(run.config, indent=2) if run.config else "none"))
    if jobs:
        lines.append("file jobs:")
        for job in jobs:
            total = MISSING if job.rows_total is None else f"{job.rows_total:,}"
            lines.append(
                f"  #{job.job_id} {job.source_path} [{job.format}] {job.status}, "
                f"{job.rows_done:,}/{total} rows" + (f", model {job.model}" if job.model else "")
            )
    return "\n".join(lines)
