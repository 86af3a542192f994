"""What a load run is asked to do: the arrival model, how long, how much in flight.

Its own module, free of the HTTP client: the app parses `--autostart` options into a plan
before its window shows, and must not pay for importing aiohttp and httpx to do it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadPlan:
    """What a load run is asked to do (validated on creation); made by the `load` command and
    the app's Load panel (`engine.cli.load_args`), followed by `LoadRunner`'s scheduler."""

    rate: float | None = None  # open model: constant arrival rate, requests/s
    concurrency: int | None = None  # closed model: N users sending back to back
    duration_s: float | None = None  # stop after this long ...
    requests: int | None = None  # ... or after this many requests
    ramp_s: float = 0.0  # linear ramp of rate / users from 0
    max_in_flight: int = 1000  # cap on requests in flight

    def __post_init__(self) -> None:
        if (self.rate is None) == (self.concurrency is None):
            raise ValueError("give exactly one of rate (open model) or concurrency (closed)")
        if self.rate is not None and not (0 < self.rate <= 1_000_000):
            raise ValueError("rate must be above 0 and at most 1,000,000 requests/s")
        if self.concurrency is not None and not (1 <= self.concurrency <= 10_000):
            raise ValueError("concurrency must be 1 to 10,000")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError("duration must be above 0")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.ramp_s < 0 or not math.isfinite(self.ramp_s):
            raise ValueError("ramp must be 0 or more seconds")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
