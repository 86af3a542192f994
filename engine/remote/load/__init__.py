"""The load runner: open or closed model traffic against one target, every request measured and
stored.

`LoadRunner` (`runner`) is the entry point; its jobs live beside it: the plan's schedule and
the run's end (`schedule`), sending and judging one request (`sending`, with the judging shared
with remote predictions in `engine.remote.outcome`), and rows, histograms, live snapshots and
the summary (`recording`). Callers import from here.

The names are loaded on first use (PEP 562): the desktop app imports `process` and `snapshot`
to show a run another process sends, and must not pay at start-up for the HTTP client, the
histograms and the store that only the sending side needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.remote.classify import UNREACHABLE
    from engine.remote.load.recording import CLIENT_ID, SOURCE, LoadResult
    from engine.remote.load.runner import LoadRunner
    from engine.remote.load.schedule import LATE_SEND_S, STOP_GRACE_S
    from engine.remote.load.sending import LoadError
    from engine.remote.load.snapshot import LoadSnapshot
    from engine.remote.outcome import (
        CLIENT_ROW_SUFFIX,
        INPUT_CAP,
        MESSAGE_CAP,
        OUTPUT_CAP,
        exchange_spans,
    )

_WHERE = {
    "UNREACHABLE": "engine.remote.classify",
    "CLIENT_ID": "engine.remote.load.recording",
    "SOURCE": "engine.remote.load.recording",
    "LoadResult": "engine.remote.load.recording",
    "LoadRunner": "engine.remote.load.runner",
    "LATE_SEND_S": "engine.remote.load.schedule",
    "STOP_GRACE_S": "engine.remote.load.schedule",
    "LoadError": "engine.remote.load.sending",
    "LoadSnapshot": "engine.remote.load.snapshot",
    "CLIENT_ROW_SUFFIX": "engine.remote.outcome",
    "INPUT_CAP": "engine.remote.outcome",
    "MESSAGE_CAP": "engine.remote.outcome",
    "OUTPUT_CAP": "engine.remote.outcome",
    "exchange_spans": "engine.remote.outcome",
}

__all__ = [
    "CLIENT_ID",
    "CLIENT_ROW_SUFFIX",
    "INPUT_CAP",
    "LATE_SEND_S",
    "MESSAGE_CAP",
    "OUTPUT_CAP",
    "SOURCE",
    "STOP_GRACE_S",
    "UNREACHABLE",
    "LoadError",
    "LoadResult",
    "LoadRunner",
    "LoadSnapshot",
    "exchange_spans",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found once: later lookups skip this function
    return value
