"""A remote inference server's own statistics: queue depth and where its time goes.

`ServerWatcher` reads, for one target, whichever of these answer: OIP's statistics extension
(Triton's shape; `inferdeck serve` offers it too), a Prometheus exposition of the server mapped
through `metric_names.toml` (Triton, MLServer, KServe and InferDeck names built in; a user's
file extends them), and a Prometheus server in front of a fleet. Each snapshot's growth since
the previous one is a `ServerInterval`; `summary()` is a run's `server` object. Qt-free.
"""

from engine.remote.server_stats.figures import ReplicaInterval, ServerInterval
from engine.remote.server_stats.names import NAMES_ENV, load_matchers
from engine.remote.server_stats.watcher import ServerSources, ServerWatcher

__all__ = [
    "NAMES_ENV",
    "ReplicaInterval",
    "ServerInterval",
    "ServerSources",
    "ServerWatcher",
    "load_matchers",
]
