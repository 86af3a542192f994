"""The load runner: open or closed model traffic against one target, every request measured and
stored.

`LoadRunner` (`runner`) is the entry point; its jobs live beside it: the plan's schedule and
the run's end (`schedule`), sending and judging one request (`sending`, with the judging shared
with remote predictions in `engine.remote.outcome`), and rows, histograms, live snapshots and
the summary (`recording`). Callers import from here.
"""

from engine.remote.classify import UNREACHABLE
from engine.remote.load.recording import CLIENT_ID, SOURCE, LoadResult, LoadSnapshot
from engine.remote.load.runner import LoadRunner
from engine.remote.load.schedule import LATE_SEND_S, STOP_GRACE_S
from engine.remote.load.sending import LoadError
from engine.remote.outcome import (
    CLIENT_ROW_SUFFIX,
    INPUT_CAP,
    MESSAGE_CAP,
    OUTPUT_CAP,
    exchange_spans,
)

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
