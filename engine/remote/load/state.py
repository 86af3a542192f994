"""The live state of one load run, shared by its three parts: the schedule (`schedule`), the
sender (`sending`) and the recorder (`recording`).

One plain object, not messages between the parts: each request touches a few of its counters,
and an attribute on a shared object is the cheapest way to do that.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class RunState:
    """Counts and flags of one run, made by `LoadRunner` and shared with its scheduler, sender
    and recorder; `LoadRunner.snapshot` reads them for the views."""

    sent: int = 0
    in_flight: int = 0
    completed: int = 0
    not_sent: int = 0  # due before the run ended, never sent (every slot held until the end)
    errors: Counter[str] = field(default_factory=Counter)
    stopping: bool = False  # stop() was called: nothing new is sent
    cut_class: str = "cancelled"  # what a request cut off in flight is counted as
    done: bool = False
    # Set whenever a request comes back, so a schedule waiting for a free slot looks again.
    slot_free: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # requests (or users) out
