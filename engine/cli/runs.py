"""`inferdeck runs list|show`: past runs and their summaries."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import aiosqlite

from engine.cli.common import EXIT_OK, CommandError, SubParsers, database, db_path, emit_json, say
from engine.ids import SHORT_ID_CHARS
from engine.remote.load.server_view import server_line
from storage import queries

# How many of the runs an ambiguous prefix matches are listed.
CANDIDATES_SHOWN = 10


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("runs", help="list or show past runs")
    runs_sub = p.add_subparsers(dest="runs_command", required=True, metavar="list|show")
    lst = runs_sub.add_parser("list", help="recent runs, newest first")
    lst.add_argument("--limit", type=int, default=20)
    show = runs_sub.add_parser("show", help="one run's summary and file jobs")
    show.add_argument(
        "run_id",
        metavar="RUN_ID",
        help=f"a run ID or a unique prefix of one (the app shows its first {SHORT_ID_CHARS})",
    )
    for sp in (lst, show):
        sp.add_argument("--db", help="database file")
        sp.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def _when(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6).strftime("%Y-%m-%d %H:%M:%S")


async def find_run(reader: aiosqlite.Connection, prefix: str) -> queries.RunRow:
    """The one run whose ID begins with `prefix` (taken literally); else a one-line error
    that, for an ambiguous prefix, lists the runs it matches."""
    if not prefix:
        raise CommandError("give a run ID or the start of one (see: inferdeck runs list)")
    rows = await queries.find_runs(reader, prefix, limit=CANDIDATES_SHOWN + 1)
    if not rows:
        raise CommandError(f"no run matches {prefix!r} (see: inferdeck runs list)")
    if len(rows) == 1:
        return rows[0]
    shown = rows[:CANDIDATES_SHOWN]
    many = f"more than {CANDIDATES_SHOWN}" if len(rows) > CANDIDATES_SHOWN else str(len(rows))
    details = [f"{r.run_id}  {r.kind:8} started {_when(r.started_us)}" for r in shown]
    raise CommandError(f"{many} runs begin with {prefix!r}; give more of the ID, one of:", details)


def _run_dict(row: queries.RunRow) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "kind": row.kind,
        "status": row.status,
        "started_us": row.started_us,
        "ended_us": row.ended_us,
        "config": row.config,
        "summary": row.summary,
    }


async def run(args: argparse.Namespace) -> int:
    async with database(db_path(args.db)) as db:
        if args.runs_command == "list":
            rows = await queries.list_runs(db.reader, args.limit)
            if args.json:
                emit_json({"runs": [_run_dict(r) for r in rows]})
                return EXIT_OK
            if not rows:
                say("no runs yet")
                return EXIT_OK
            say(
                f"{'RUN':36}  {'KIND':8} {'STATUS':11} {'STARTED':19}  {'OK':>8} {'BAD':>6}  P99 ms"
            )
            for r in rows:
                s = r.summary or {}
                bad = s.get("rejected", 0) + s.get("failed", 0)
                p99 = s.get("latency_ms", {}).get("p99")
                say(
                    f"{r.run_id:36}  {r.kind:8} {r.status:11} {_when(r.started_us):19}  "
                    f"{s.get('ok', '-'):>8} {bad if s else '-':>6}  "
                    f"{'-' if p99 is None else f'{p99:.2f}'}"
                )
            return EXIT_OK
        row = await find_run(db.reader, args.run_id)
        found = await queries.run_detail(db.reader, row)
        counts, jobs = found.status_counts, found.file_jobs
        detail = _run_dict(row) | {
            "status_counts": counts,
            "file_jobs": [
                {
                    "job_id": j.job_id,
                    "source_path": j.source_path,
                    "format": j.format,
                    "status": j.status,
                    "rows_done": j.rows_done,
                    "rows_total": j.rows_total,
                }
                for j in jobs
            ],
        }
        if args.json:
            emit_json(detail)
            return EXIT_OK
        say(f"run {row.run_id} ({row.kind}, {row.status})")
        say(f"  started {_when(row.started_us)}, ended {_when(row.ended_us)}")
        say("  requests: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
        if row.summary:
            lat = row.summary["latency_ms"]
            say(
                f"  throughput {row.summary['throughput_per_s']:,.0f}/s; latency ms "
                f"p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
                f"p99.9 {lat['p999']:.2f}  max {lat['max']:.2f}"
            )
            if (server := row.summary.get("server")) is not None:
                say("  " + server_line(server))
        for j in jobs:
            total = "?" if j.rows_total is None else f"{j.rows_total}"  # unknown: not counted
            say(
                f"  job {j.job_id}: {j.source_path} [{j.format}] {j.status}, "
                f"{j.rows_done} of {total} rows"
            )
    return EXIT_OK
