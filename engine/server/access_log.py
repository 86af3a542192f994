"""One structured JSON line per request, written in batches.

A `logging` call per request (a LogRecord, caller lookup, a handler lock and a write) cost about
7 % of the service's event-loop time under load. Lines are queued instead and handed to the
`inferdeck.access` logger once per event-loop turn, joined by newlines: still one JSON object
per line on the handler's stream, through whatever handlers the logging config gives.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

logger = logging.getLogger("inferdeck.access")


class AccessLog:
    """The queued access-log lines of one service; `Edge` writes one per request."""

    def __init__(self, log: logging.Logger = logger) -> None:
        self._log = log
        self._lines: list[str] = []

    def enabled(self) -> bool:
        return self._log.isEnabledFor(logging.INFO)

    def write(self, entry: dict[str, Any]) -> None:
        if not self._lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a synchronous caller): write at once
                self._lines.append(orjson.dumps(entry).decode())
                self.flush()
                return
        self._lines.append(orjson.dumps(entry).decode())

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            self._log.info("\n".join(lines))
