"""The health check a load run makes before it starts: one round of the target's own health
probes (`engine.remote.prober`: live, ready, model-ready), and what it means for the run.

A run against a target that is down would only fill the store with refused requests, so it is
refused with the reason in plain words; a degraded target (live, not ready) still gets its run,
told as such, since a load test of a warming-up server is a fair thing to want.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.remote.prober import Prober, State, plain_reason
from engine.remote.targets import Target


@dataclass(frozen=True, slots=True)
class Health:
    """One preflight round of a target: its state, why in plain words, and in the probe's terms."""

    url: str  # the target's URL as shown (credentials redacted)
    state: State
    reason: str
    detail: str

    @property
    def down(self) -> bool:
        return self.state == "down"

    def text(self) -> str:
        """One sentence for the person about to start the run."""
        if self.state == "up":
            return f"{self.url} is up"
        if self.down:
            return f"{self.url} is down: {self.reason}"
        return f"{self.url} answers but is not ready ({self.reason}); sending anyway"


async def check_health(target: Target, token: str | None = None) -> Health:
    """Probe `target` once (nothing stored, nobody notified) and say what was found."""
    async with Prober(target, token=token) as prober:
        done = await prober.probe_once()
    return Health(target.redacted_url(), done.state, plain_reason(done), done.detail)
