"""The server's own view of a load run: its statistics watched from before the first request to
after the last, off the sending path.

A `ServerWatcher` (`engine.remote.server_stats`) polls the target's sources once a second in a
task of its own; every read is bounded in bytes and time and parsed off the event loop, so a
metrics endpoint that is down, slow, huge or garbled costs the run nothing but a line in
`problems`. What it saw joins the run: the live interval in each snapshot, and in the stored
summary the `server` object (the same keys whatever the source, None where the source lacks a
figure) and `server_series`, every interval of the run.
"""

from __future__ import annotations

from typing import Any

from engine.remote.server_stats import ServerSources, ServerWatcher
from engine.remote.targets import Target

# The `server` object's keys that scripts rely on (`inferdeck load --json`), in this order.
SERVER_KEYS = ("source", "requests", "queue_ms", "compute_ms", "pending_max", "batch_size_mean")


def sources_of(target: Target) -> ServerSources:
    """The target's server-statistics sources as its settings give them."""
    return ServerSources(
        metrics_url=target.metrics_url,
        prometheus_url=target.prometheus_url,
        selector=target.prometheus_selector,
        automatic=target.server_stats,
    )


def wanted(target: Target) -> bool:
    """Whether any source is to be looked at (`--no-server-stats` and none given: no)."""
    return target.server_stats or bool(target.metrics_url or target.prometheus_url)


class ServerSide:
    """A run's `ServerWatcher`, started by `LoadRunner.run` before traffic and stopped after
    (and by `inferdeck probe`, polled after each round); does nothing for a target whose
    sources are all off."""

    def __init__(self, target: Target, token: str | None, interval_s: float = 1.0) -> None:
        self._watcher = (
            ServerWatcher(target, sources_of(target), token=token, interval_s=interval_s)
            if wanted(target)
            else None
        )

    async def start(self, *, periodic: bool = True) -> None:
        """The first snapshot; with `periodic`, one every interval after it, in a task."""
        if self._watcher is not None:
            await self._watcher.start(periodic=periodic)

    async def poll(self) -> dict[str, Any] | None:
        """A snapshot now: the interval since the last one, as a dict (None without one)."""
        if self._watcher is None:
            return None
        interval = await self._watcher.poll()
        return None if interval is None else interval.to_dict()

    def live(self) -> dict[str, Any] | None:
        """The latest interval for a view (with the sources in use and what is missing), or
        None when no source is on."""
        watcher = self._watcher
        if watcher is None:
            return None
        latest = watcher.latest()
        return {
            "interval": None if latest is None else latest.to_dict(),
            "in_use": watcher.in_use(),
            "problems": watcher.problems(),
        }

    async def stop(self) -> dict[str, Any]:
        """Take the last snapshot; what joins the run's summary: `server` (None when no source
        is on) and `server_series`."""
        watcher = self._watcher
        if watcher is None:
            return {"server": None, "server_series": []}
        await watcher.stop()
        server = watcher.summary()
        if server is None:  # looked, found nothing usable: say what was missing
            server = dict.fromkeys(SERVER_KEYS) | {"missing": watcher.problems()}
        server["in_use"] = watcher.in_use()
        return {
            "server": server,
            "server_series": [interval.to_dict() for interval in watcher.series()],
        }
