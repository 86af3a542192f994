"""`inferdeck load URL`: send open- or closed-model traffic to a target and store every request."""

from __future__ import annotations

import argparse
import os
from typing import Any

import orjson
from pydantic import ValidationError

from engine.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    CommandError,
    SubParsers,
    db_path,
    emit_json,
    on_ctrl_c,
    parse_headers,
    say,
)
from engine.cli.load_args import DEFAULT_DURATION_S, TOKEN_ENV, plan_from_args
from engine.cli.targets import add_server_stats_options, server_stats_fields
from engine.remote.credentials import host_name, redact_url
from engine.remote.load import LoadError, LoadRunner
from engine.remote.load.server_view import server_line
from engine.remote.payloads import PayloadError, PayloadSource
from engine.remote.plan import LoadPlan
from engine.remote.targets import PROTOCOLS, Target, describe_validation
from engine.tasks import freeze_startup_objects
from storage.database import Database, StorageError, open_database


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser(
        "load",
        help="send load to a remote target and measure it",
        description="Send traffic to URL at a constant rate (open model: latency counts from "
        "each request's intended send time) or from N concurrent users (closed model), and "
        f"store every request. A bearer token is read from ${TOKEN_ENV}.",
    )
    p.add_argument("url", metavar="URL", help="the target's base URL")
    p.add_argument("--protocol", choices=PROTOCOLS, default="inferdeck")
    p.add_argument("--model", help="model name (inferdeck and oip)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, metavar="R", help="open model: requests per second")
    mode.add_argument("--concurrency", type=int, metavar="C", help="closed model: users")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument(
        "--duration", type=float, metavar="S", help=f"seconds (default {DEFAULT_DURATION_S:g})"
    )
    stop.add_argument("--requests", type=int, metavar="N", help="stop after N requests")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--payload", metavar="FILE", help="JSON, JSONL or CSV rows, cycled")
    source.add_argument("--data", metavar="JSON", help="one payload as a JSON object")
    source.add_argument(
        "--replay", action="store_true", help="replay stored inputs of --model from the database"
    )
    p.add_argument("--header", action="append", default=[], metavar="K:V", help="extra header")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="per request")
    p.add_argument("--ramp", type=float, default=0.0, metavar="S", help="ramp up from 0 over S")
    p.add_argument("--max-in-flight", type=int, default=1000, metavar="N")
    p.add_argument(
        "--trace-every",
        type=int,
        default=50,
        metavar="N",
        help="report connect/send/wait phases for 1 in N requests (0: none)",
    )
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--db", help="database file (default: $INFERDECK_DB or the user data folder)")
    p.add_argument("--json", action="store_true", help="end with a JSON summary line")
    add_server_stats_options(p)
    p.set_defaults(run=run)


def _target(args: argparse.Namespace) -> Target:
    try:
        return Target(
            name=host_name(args.url),
            base_url=args.url,
            protocol=args.protocol,
            model=args.model,
            headers=parse_headers(args.header),
            timeout_s=args.timeout,
            verify_tls=not args.insecure,
            **server_stats_fields(args),
        )
    except ValidationError as exc:
        raise CommandError(f"{redact_url(args.url)}: {describe_validation(exc)}") from None


def _plan(args: argparse.Namespace) -> LoadPlan:
    try:
        return plan_from_args(args)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _payloads(args: argparse.Namespace) -> PayloadSource | None:
    """The payloads, or None for `--replay` (read once the database is open)."""
    if args.replay:
        if not args.model:
            raise CommandError("--replay needs --model")
        return None
    try:
        if args.payload:
            return PayloadSource.from_file(args.payload)
        if args.data:
            value: Any = orjson.loads(args.data)
            if not isinstance(value, dict):
                raise CommandError("--data must be a JSON object")
            return PayloadSource.single(value)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"--data is not JSON: {exc}") from None
    except PayloadError as exc:
        raise CommandError(str(exc)) from None
    # No payload given: an example the model accepts, made from its schema on the target.
    return PayloadSource.model_example()


async def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError("--timeout must be above 0")
    if args.trace_every < 0:
        raise CommandError("--trace-every must be 0 or more")
    target = _target(args)
    plan = _plan(args)
    payloads = _payloads(args)
    try:
        db = await open_database(db_path(args.db))
    except StorageError as exc:
        raise CommandError(str(exc)) from None
    try:
        return await _load(args, db, target, plan, payloads)
    finally:
        await db.close()


async def _load(
    args: argparse.Namespace,
    db: Database,
    target: Target,
    plan: LoadPlan,
    payloads: PayloadSource | None,
) -> int:
    if payloads is None:
        try:
            payloads = await PayloadSource.from_history(db, args.model)
        except PayloadError as exc:
            raise CommandError(str(exc)) from None
    runner = LoadRunner(
        target,
        plan,
        payloads,
        db=db,
        token=os.environ.get(TOKEN_ENV) or None,
        trace_every=args.trace_every,
    )
    try:
        await runner.check()  # the run can start, and something answers at the target
    except LoadError as exc:
        raise CommandError(str(exc)) from None
    # Everything alive now stays; a collection walking it mid-run would stall the loop.
    freeze_startup_objects()
    with on_ctrl_c(runner.stop):
        result = await runner.run()
    summary = result.summary
    if args.json:
        # Every interval of the server's series is stored with the run; the line printed keeps
        # to the run's figures and the `server` object.
        emit_json({k: v for k, v in summary.items() if k != "server_series"})
    else:
        _say_summary(summary)
    return EXIT_PARTIAL if summary["failed"] or summary["rejected"] else EXIT_OK


def _say_summary(summary: dict[str, Any]) -> None:
    lat = summary["latency_ms"]
    say(
        f"run {summary['run_id']}: {summary['ok']:,} ok, {summary['failed']:,} failed of "
        f"{summary['accepted']:,} in {summary['duration_s']:.2f} s "
        f"({summary['throughput_per_s']:,.0f}/s)"
    )
    say(
        f"latency ms: p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
        f"p99.9 {lat['p999']:.2f}  max {lat['max']:.2f}"
    )
    if not_sent := summary.get("not_sent"):
        say(f"not sent: {not_sent:,} (due before the end but not sent by then; never sent late)")
    if (server := summary.get("server")) is not None:
        say(server_line(server))
    errors = summary.get("errors") or {}
    if errors:
        ranked = sorted(errors.items(), key=lambda kv: -kv[1])
        say("errors: " + ", ".join(f"{name} {count:,}" for name, count in ranked))
