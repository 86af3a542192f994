"""Request IDs and W3C trace context at the edge of the service.

A caller's `X-Request-ID` is kept when it is a valid ID, or one is made; a caller's
`traceparent` is continued (same trace, a new span for this server), or a trace is started.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any

from engine.contracts import IDENT_PATTERN
from engine.ids import new_id

_ID = re.compile(IDENT_PATTERN)
_random = random.Random()
# A forked worker (`serve --workers N`) would otherwise repeat its parent's sequence.
os.register_at_fork(after_in_child=_random.seed)
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def request_id_from(header: str | None) -> tuple[str, bool]:
    """The request's ID, and whether the caller chose it (then it must be checked unique)."""
    if header and len(header) <= 64 and _ID.match(header):
        return header, True
    return new_id(), False


def continue_trace(header: str | None) -> tuple[str, str | None]:
    """This server's `traceparent` (the caller's trace ID and flags, a new span ID), and the
    caller's span ID when it sent a valid one (the parent of this server's span)."""
    match = _TRACEPARENT.match(header.strip().lower()) if header else None
    parent: str | None = None
    if match and match.group(1) != "0" * 32 and match.group(2) != "0" * 16:
        trace_id, parent, flags = match.group(1), match.group(2), match.group(3)
    else:
        trace_id, flags = f"{_random.getrandbits(128):032x}", "01"
    # Trace and span IDs need to be unique, not secret: no system call per request.
    return f"00-{trace_id}-{_random.getrandbits(64):016x}-{flags}", parent


def server_timing(spans: list[tuple[Any, ...]]) -> str:
    """`Server-Timing: validate;dur=0.012, ...` in milliseconds, as browsers and tools read it."""
    return ", ".join(f"{s[0]};dur={s[2] / 1000:.3f}" for s in spans)
