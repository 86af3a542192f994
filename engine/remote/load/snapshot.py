"""`LoadSnapshot`: what a view draws of a load run, as plain data.

Apart from the recorder that makes it (`recording`) so that a process which only shows a run,
the desktop app, reads it without importing the HTTP client, the histograms and the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LoadSnapshot:
    """What a view draws; cheap to make, plain Python."""

    elapsed_s: float
    sent: int
    in_flight: int
    completed: int
    ok: int
    failed: int
    errors: dict[str, int]
    throughput_per_s: float  # ok answers per second over the recent window
    errors_per_s: float
    p50_ms: float  # over the recent window
    p99_ms: float
    stage_ms: dict[str, float]
    done: bool
    # The server's own view (`engine.remote.load.server_side.ServerSide.live`): its latest
    # interval, the sources in use and what is missing; None when no source is on.
    server: dict[str, Any] | None = None
