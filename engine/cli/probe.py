"""`inferdeck probe URL|NAME`: a target's health, headless, one line per round.

The same `Prober` the app runs: live / ready / model-ready judged by HTTP status, each probe's
latency, every probe stored. `--count N` rounds (1 by default); `--interval S` without `--count`
runs until Ctrl+C, which ends the run with its summary. Exit status 0 when every round was up,
1 otherwise (the target answered badly or not at all), 2 when it could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
from typing import Any

from engine.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    CommandError,
    SubParsers,
    database,
    db_path,
    emit_json,
    on_ctrl_c,
    say,
)
from engine.cli.targets import add_target_options, target_fields
from engine.remote.credentials import host_name
from engine.remote.load.server_side import ServerSide
from engine.remote.prober import KINDS, Prober, ProbeResult, ProbeRound, StateChange
from engine.remote.secrets import TokenStore
from engine.remote.target_store import TargetError, TargetStore, make_target
from engine.remote.targets import Target

DEFAULT_INTERVAL_S = 5.0


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("probe", help="probe a target's health (live, ready, model ready)")
    p.add_argument("url", metavar="URL|NAME", help="a base URL, or a saved target's name")
    add_target_options(p)
    p.add_argument("--interval", type=float, metavar="S", help="seconds between rounds")
    p.add_argument("--count", type=int, metavar="N", help="rounds to run (default 1)")
    p.add_argument("--json", action="store_true", help="end with one JSON summary line")
    p.set_defaults(run=run)


def _check(args: argparse.Namespace) -> None:
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1")
    if args.interval is not None and not args.interval > 0:
        raise CommandError("--interval must be a positive number of seconds")
    if args.timeout is not None and not args.timeout > 0:
        raise CommandError("--timeout must be a positive number of seconds")


async def _resolve(args: argparse.Namespace, store: TargetStore) -> tuple[Target, str | None]:
    """The target to probe and its token: a URL as given, or a saved target with overrides."""
    fields = target_fields(args)
    if "://" in args.url:
        return make_target(name=host_name(args.url), base_url=args.url, **fields), None
    found = await store.get(args.url)
    if found is None:
        raise CommandError(f"{args.url!r} is neither an http(s) URL nor a saved target's name")
    if found.missing_secrets:
        raise CommandError(
            f"target {args.url!r}: secrets not available in this process: "
            + ", ".join(found.missing_secrets)
        )
    merged = found.target.model_dump() | fields
    if "headers" in fields:
        merged["headers"] = found.target.headers | fields["headers"]
    return make_target(**merged), store.token(found.target.name)


def _ms(us: int) -> float:
    return us / 1000


def _cell(r: ProbeResult) -> str:
    status = str(r.status_code) if r.status_code is not None else "ERR"
    text = f"{r.kind} {status} {_ms(r.latency_us):.1f}ms"
    return text if r.status_code is not None else f"{text} ({r.error})"


def round_line(done: ProbeRound) -> str:
    when = dt.datetime.fromtimestamp(done.at_us / 1e6).strftime("%H:%M:%S.%f")[:-3]
    line = f"{when}  {done.state:8}  " + "  ".join(_cell(r) for r in done.results)
    return line if done.state == "up" else f"{line}  - {done.detail}"


def server_text(interval: dict[str, Any] | None) -> str:
    """The server's own figures over the last round, appended to its line ('' without)."""
    if interval is None:
        return ""
    parts = [f"{interval['throughput_per_s']:,.1f} req/s"]
    for key, name in (("queue_ms", "queue"), ("compute_ms", "compute")):
        if interval.get(key) is not None:
            parts.append(f"{name} {interval[key]:.2f}ms")
    if interval.get("pending") is not None:
        parts.append(f"pending {interval['pending']:g}")
    return "  server: " + " ".join(parts)


def round_details(
    rounds: list[ProbeRound], server: list[dict[str, Any] | None]
) -> list[dict[str, Any]]:
    """Each round: when, its state, each probe's status and latency, the server's figures."""
    return [
        {
            "at_us": done.at_us,
            "state": done.state,
            "probes": {
                r.kind: {"status": r.status_code, "latency_ms": _ms(r.latency_us)}
                for r in done.results
            },
            "server": figures,
        }
        for done, figures in zip(rounds, server, strict=True)
    ]


def _pick(values: list[int], q: float) -> float:
    """Nearest-rank percentile of microseconds, in milliseconds."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return round(_ms(ordered[index]), 3)


def summary(
    target: Target, rounds: list[ProbeRound], changes: tuple[StateChange, ...]
) -> dict[str, Any]:
    states = {"up": 0, "degraded": 0, "down": 0}
    latencies: dict[str, list[int]] = {}
    errors: dict[str, int] = {}
    for done in rounds:
        states[done.state] = states.get(done.state, 0) + 1
        for r in done.results:
            latencies.setdefault(r.kind, []).append(r.latency_us)
            if not r.ok:
                errors[r.kind] = errors.get(r.kind, 0) + 1
    return {
        "target": target.name,
        "url": target.redacted_url(),
        "protocol": target.protocol,
        "model": target.model,
        "rounds": len(rounds),
        "states": states,
        "changes": [
            {"at_us": c.at_us, "from": c.old, "to": c.new, "detail": c.detail} for c in changes
        ],
        "final_state": rounds[-1].state if rounds else "unknown",
        "latency_ms": {
            kind: {"p50": _pick(v, 0.5), "max": _pick(v, 1.0)}
            for kind in KINDS
            if (v := latencies.get(kind))
        },
        "errors": errors,
    }


async def run(args: argparse.Namespace) -> int:
    _check(args)
    count = args.count if args.count is not None else (None if args.interval else 1)
    interval = args.interval or DEFAULT_INTERVAL_S
    async with database(db_path(args.db)) as db:
        try:
            target, token = await _resolve(args, TargetStore(db, TokenStore()))
        except TargetError as exc:
            raise CommandError(str(exc)) from exc
        rounds: list[ProbeRound] = []
        server_figures: list[dict[str, Any] | None] = []
        side = ServerSide(target, token)

        async def probe_rounds(prober: Prober) -> None:
            # The server's own figures are read after each round, off the probes' schedule:
            # a slow metrics endpoint delays its line, never the next round.
            async def on_round_server(done: ProbeRound) -> None:
                interval = await side.poll()
                rounds.append(done)
                server_figures.append(interval)
                say(round_line(done) + server_text(interval))

            pending: set[asyncio.Task[None]] = set()

            def on_round(done: ProbeRound) -> None:
                task = asyncio.get_running_loop().create_task(on_round_server(done))
                pending.add(task)
                task.add_done_callback(pending.discard)

            try:
                await prober.run(count, on_round)
            finally:
                if pending:
                    await asyncio.wait(pending)

        await side.start(periodic=False)
        try:
            async with Prober(target, interval_s=interval, db=db, token=token) as prober:
                task = asyncio.get_running_loop().create_task(probe_rounds(prober))
                # Ctrl+C ends an open-ended run with its summary instead of a traceback.
                with on_ctrl_c(task.cancel):
                    await asyncio.wait([task])
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error
                changes = prober.snapshot().changes
        finally:
            server = await asyncio.shield(side.stop())
    if args.json:
        emit_json(
            summary(target, rounds, changes)
            | {"server": server["server"], "round_details": round_details(rounds, server_figures)}
        )
    all_up = bool(rounds) and all(r.state == "up" for r in rounds)
    return EXIT_OK if all_up else EXIT_PARTIAL
