"""When something happened, as the app's tables and reports show it (local time).

One function for every view, with the format a place needs: the Requests table to the
millisecond, the Targets table short (a time today, a date and minute before), runs in full.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

MISSING = "—"

WhenStyle = Literal["full", "short", "milliseconds"]


def when_text(us: int | None, style: WhenStyle = "full") -> str:
    """`us` (microseconds since the epoch) as local time: "full" 2026-05-01 14:03:07,
    "short" 14:03:07 today and 2026-04-30 14:03 before, "milliseconds" 14:03:07.412."""
    if us is None:
        return MISSING
    at = dt.datetime.fromtimestamp(us / 1e6)
    if style == "milliseconds":
        return at.strftime("%H:%M:%S.%f")[:-3]
    if style == "short":
        return at.strftime("%H:%M:%S" if at.date() == dt.date.today() else "%Y-%m-%d %H:%M")
    return at.strftime("%Y-%m-%d %H:%M:%S")
