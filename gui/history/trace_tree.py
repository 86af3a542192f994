"""A stored request's spans as a tree, its time axis and each span's attributes (no Qt here).

Spans are stored flat, as `[name, start µs, duration µs, attributes?]` (`engine.work.SpanTuple`).
The Trace view shows them as Jaeger does: one root for the whole request, its phases beneath it,
and for a request sent to a target the server's stages (`server.*`, from `Server-Timing`) nested
inside the client's `wait`, since that is where the server did its work. A request to this
project's own service may find the server's stored row in the same database: its stages (with
their batch size, and the write) then replace the header's estimate (`use_server_row`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SERVER_PREFIX = "server."

# Attribute keys people know by another name; any other key is shown with its underscores as
# spaces (`batch_size` -> "batch size"), so whatever a span carries is shown.
_ATTRIBUTE_NAMES = {
    "batch_size": "batch size",
    "http_status": "HTTP status",
    "retries": "retries",
    "attempt": "attempt",
    "offset": "start offset",
    "phases": "phases",
    "server_request_id": "server request ID",
    "traceparent": "traceparent",
    "rerun_of": "run again of",
}


@dataclass(eq=False)
class SpanNode:
    """One span of the tree: where it starts and how long it took (µs from the request's start),
    what it carries, and the spans it holds."""

    name: str
    start_us: int
    duration_us: int
    attrs: dict[str, Any] = field(default_factory=dict)
    children: list[SpanNode] = field(default_factory=list)
    side: str = "client"  # "request", "client", "engine" (local) or "server"

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us

    def walk(self) -> list[SpanNode]:
        """This span and every span under it, depth first (the order the tree shows them)."""
        found = [self]
        for child in self.children:
            found.extend(child.walk())
        return found

    def find(self, name: str) -> SpanNode | None:
        return next((node for node in self.walk() if node.name == name), None)


def decoded(value: Any) -> Any:
    """A stored JSON column as Python (text that is not JSON stays text)."""
    if isinstance(value, str | bytes):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _span(raw: Any, side: str) -> SpanNode | None:
    if not isinstance(raw, list | tuple) or len(raw) < 3:
        return None
    try:
        start, duration = int(raw[1]), int(raw[2])
    except (TypeError, ValueError):
        return None
    attrs = raw[3] if len(raw) > 3 and isinstance(raw[3], dict) else {}
    return SpanNode(str(raw[0]), start, max(duration, 0), dict(attrs), side=side)


def request_attributes(row: dict[str, Any]) -> dict[str, Any]:
    """What the whole request carries: its outcome, where it went and its stored metadata."""
    attrs: dict[str, Any] = {"status": row.get("status")}
    for key in ("model", "target", "source", "client_id", "source_row"):
        if row.get(key) not in (None, ""):
            attrs[key] = row[key]
    metadata = decoded(row.get("metadata"))
    if isinstance(metadata, dict):
        attrs.update(metadata)
    error = decoded(row.get("error"))
    if isinstance(error, dict):
        attrs["error"] = error.get("message") or error.get("code")
    elif error:
        attrs["error"] = error
    return attrs


def build_tree(row: dict[str, Any]) -> SpanNode:
    """The request as a tree: a root spanning it all, its phases, the server's inside `wait`."""
    raw = decoded(row.get("spans"))
    spans = raw if isinstance(raw, list) else []
    remote = any(isinstance(s, list | tuple) and s and s[0] == "wait" for s in spans)
    nodes: list[SpanNode] = []
    for s in spans:
        server = isinstance(s, list | tuple) and str(s[0] if s else "").startswith(SERVER_PREFIX)
        node = _span(s, "server" if server else ("client" if remote else "engine"))
        if node is None:
            continue
        if node.name == "request":  # a remote request's one span when no answer came
            node.name = "attempt"
        nodes.append(node)
    latency = row.get("latency_us")
    total = max([int(latency) if latency else 0, *(n.end_us for n in nodes), 1])
    root = SpanNode("request", 0, total, request_attributes(row), side="request")
    wait = next((n for n in nodes if n.name == "wait"), None)
    for node in nodes:
        if node.side == "server" and wait is not None:
            wait.children.append(node)
        else:
            root.children.append(node)
    if wait is not None and "http_status" in root.attrs:
        # The status line ends the wait: the answer's first bytes are what the wait was for.
        wait.attrs.setdefault("http_status", root.attrs["http_status"])
    for node in root.walk():
        node.children.sort(key=lambda n: n.start_us)
    return root


def use_server_row(root: SpanNode, server_row: dict[str, Any]) -> bool:
    """Put the server's own stored stages (our service, same database) inside the client's
    wait in place of the `Server-Timing` estimate; False when there is no wait to hold them.

    The server's offsets are its own (from its acceptance), so they keep their spacing and are
    centred in the wait as `engine.remote.server_timing.place_server_spans` centres the header's."""
    wait = root.find("wait")
    raw = decoded(server_row.get("spans"))
    if wait is None or not isinstance(raw, list):
        return False
    stages = [n for n in (_span(s, "server") for s in raw) if n is not None]
    if not stages:
        return False
    first = min(n.start_us for n in stages)
    length = max(n.end_us for n in stages) - first
    shift = wait.start_us + (wait.duration_us - length) // 2 - first
    if length > wait.duration_us:
        shift = wait.end_us - length - first  # cannot have ended after the answer came
    for node in stages:
        node.name = SERVER_PREFIX + node.name
        node.start_us += shift
        node.attrs = {**node.attrs, "offset": "server's stored trace, centred in the wait"}
    wait.children = sorted(stages, key=lambda n: n.start_us)
    return True


def ms_text(us: float) -> str:
    """Microseconds as milliseconds for people: `1.234 ms`, `12.3 ms`, `1,234 ms`."""
    ms = us / 1000
    if abs(ms) < 10:
        return f"{ms:.3f} ms"
    if abs(ms) < 1000:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms"


def span_details(node: SpanNode, total_us: int) -> list[tuple[str, str]]:
    """The rows of the details pane for `node`: timing first, then whatever it carries."""
    share = 100 * node.duration_us / total_us if total_us > 0 else 0.0
    rows = [
        ("span", node.name),
        ("start", "+" + ms_text(node.start_us)),
        ("duration", ms_text(node.duration_us)),
        ("share of total", f"{share:.1f} %"),
    ]
    for key, value in node.attrs.items():
        text = value if isinstance(value, str) else json.dumps(value)
        rows.append((_ATTRIBUTE_NAMES.get(key, key.replace("_", " ")), text))
    return rows


def axis_ticks(total_us: int, max_ticks: int = 8) -> list[int]:
    """Round tick positions (µs) from 0 to `total_us`: a step of 1, 2 or 5 × 10^k µs, the
    smallest that gives at most `max_ticks` intervals."""
    total = max(int(total_us), 1)
    step = 1
    while True:
        for mult in (1, 2, 5):
            if total / (step * mult) <= max_ticks:
                size = step * mult
                return list(range(0, total + 1, size))
        step *= 10


def tick_label(us: int) -> str:
    """A tick's label: `0`, `0.5 ms`, `12 ms`, `1.2 s`."""
    if us == 0:
        return "0"
    if us >= 1_000_000:
        return f"{us / 1_000_000:g} s"
    return f"{us / 1000:g} ms"
