"""The server's own figures of a load run as a view shows them: its series' values, whether the
client's and the server's views agree (Little's law), and the line that says so.

Plain functions over a `LoadSnapshot`'s `server` entry (`server_side.ServerSide.live`), apart
from the watcher itself so that the desktop app, which only draws a run, imports no HTTP client.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.remote.load.snapshot import LoadSnapshot

_NAN = math.nan


def server_values(live: dict[str, Any] | None) -> dict[str, float]:
    """A snapshot's server figures as a view's series take them (NaN where there are none):
    `server_s` (its requests a second), `server_queue` and `server_compute` (ms a request),
    `server_pending` (its queue depth)."""
    interval = (live or {}).get("interval") or {}

    def number(key: str) -> float:
        value = interval.get(key)
        return float(value) if isinstance(value, (int, float)) else _NAN

    return {
        "server_s": number("throughput_per_s"),
        "server_queue": number("queue_ms"),
        "server_compute": number("compute_ms"),
        "server_pending": number("pending"),
    }


def views_disagree(snap: LoadSnapshot) -> str | None:
    """Where the client's and the server's views of the run part, in words; None when they
    agree or one of them lacks the figures.

    Throughput: the server counts every caller's requests, the client only its own. Requests in
    the server (Little's law: its throughput × its time per request, or its pending gauge)
    against the client's in flight: more in the server means other callers; far fewer means the
    client's requests wait outside it (the network, a proxy, a load balancer, the client)."""
    interval = (snap.server or {}).get("interval") or {}
    server_rate = interval.get("throughput_per_s")
    client_rate = snap.throughput_per_s
    if not isinstance(server_rate, (int, float)) or client_rate <= 0 or server_rate <= 0:
        return None
    if abs(server_rate - client_rate) > max(0.2 * client_rate, 5.0):
        return (
            f"the server counts {server_rate:,.0f} requests/s, this client gets "
            f"{client_rate:,.0f}/s answered: other callers share it, or its figures cover "
            "other replicas or models"
        )
    server_ms = interval.get("server_ms")
    if not isinstance(server_ms, (int, float)):
        parts = [interval.get(k) for k in ("queue_ms", "compute_ms")]
        server_ms = (
            sum(v for v in parts if isinstance(v, (int, float)))
            if any(isinstance(v, (int, float)) for v in parts)
            else None
        )
    if server_ms is None:
        return None
    in_server = server_rate * server_ms / 1000  # Little's law: L = λ·W
    in_flight = snap.in_flight
    if in_server > 1.2 * in_flight + 1:
        return (
            f"the server holds {in_server:.1f} requests on average, more than the {in_flight} "
            "this client has out: other callers share it"
        )
    if in_flight > 2 * in_server + 2:
        return (
            f"{in_flight} requests are out but the server holds {in_server:.1f} on average "
            "(its throughput × its time): the rest wait outside it (network, proxy, client)"
        )
    return None


def replica_text(replica: dict[str, Any]) -> str:
    """One replica of a fleet over the last interval: its rate, its queue and its pending."""
    text = f"{replica.get('instance', '?')} {replica.get('throughput_per_s') or 0:,.0f}/s"
    if isinstance(queue := replica.get("queue_ms"), (int, float)):
        text += f" queue {queue:.2f} ms"
    if isinstance(pending := replica.get("pending"), (int, float)):
        text += f" pending {pending:g}"
    return text


def server_status(snap: LoadSnapshot) -> str:
    """The line under the load plots: the server's sources, what is missing, whether the two
    views agree; '' when no source is on."""
    live = snap.server
    if live is None:
        return ""
    in_use = live.get("in_use") or []
    parts = [f"Server figures from {', '.join(in_use)}" if in_use else "No server figures"]
    replicas = (live.get("interval") or {}).get("replicas") or []
    if replicas:
        parts.append("replicas: " + "; ".join(replica_text(r) for r in replicas))
    if problems := live.get("problems"):
        parts.append("missing: " + "; ".join(problems))
    if (differ := views_disagree(snap)) is not None:
        parts.append("client and server disagree: " + differ)
    elif (live.get("interval") or {}).get("throughput_per_s") is not None and in_use:
        parts.append("client and server agree")
    return " · ".join(parts)


def interval_at(series: list[dict[str, Any]], at_us: int) -> dict[str, Any] | None:
    """The interval of a run's stored server series (`server_series`) that holds `at_us`, or
    None: what the server was doing around one request of the run."""
    for interval in series:
        end = interval.get("at_us")
        seconds = interval.get("seconds")
        if not isinstance(end, int) or not isinstance(seconds, (int, float)):
            continue
        if end - seconds * 1e6 <= at_us <= end:
            return interval
    return None


def interval_text(interval: dict[str, Any]) -> str:
    """One interval of the server's figures in one line, for a request's trace."""
    parts = [f"{interval.get('throughput_per_s') or 0:,.0f} requests/s"]
    for key, name in (
        ("queue_ms", "queue"),
        ("compute_input_ms", "input"),
        ("compute_infer_ms", "infer"),
        ("compute_output_ms", "output"),
        ("compute_ms", "compute"),
        ("server_ms", "whole request"),
    ):
        value = interval.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{name} {value:.2f} ms")
    if isinstance(pending := interval.get("pending"), (int, float)):
        parts.append(f"pending {pending:g}")
    if isinstance(batch := interval.get("batch_size_mean"), (int, float)):
        parts.append(f"batch {batch:.2f}")
    return " · ".join(parts)


def _dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def server_line(server: dict[str, Any]) -> str:
    """The server's own figures over the run, in one line (or what was missing)."""
    if server.get("source") is None:
        missing = "; ".join(server.get("missing") or []) or "no source answered"
        return f"server: no statistics ({missing})"
    line = (
        f"server ({server['source']}): {server['requests'] or 0:,} requests, "
        f"queue {_dash(server['queue_ms'])} ms, compute {_dash(server['compute_ms'])} ms"
    )
    if server.get("pending_max") is not None:
        line += f", pending max {server['pending_max']:g}"
    if server.get("batch_size_mean") is not None:
        line += f", batch {server['batch_size_mean']:.2f}"
    if replicas := server.get("replicas"):
        line += f" across {len(replicas)} replicas"
    return line
