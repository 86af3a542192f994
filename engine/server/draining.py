"""uvicorn's server as `inferdeck serve` runs it: every stop signal is a graceful drain.

uvicorn listens for SIGINT and SIGTERM only, and after its drain raises the signal it caught
again, so a clean stop ended as "killed by SIGTERM" (exit 143). A closed terminal or SSH
session sends SIGHUP, which killed the service at once: requests in flight got a reset. Here
SIGHUP drains as SIGTERM does (unless it was ignored, as `nohup` does), and a drained service
exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Generator
from types import FrameType

import uvicorn


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains on SIGTERM, SIGINT or SIGHUP and does not re-raise the
    signal afterwards. `force_on_second_sigint`: a second Ctrl+C stops at once (a person at a
    terminal); pre-forked workers turn it off, since Ctrl+C reaches them as well as the parent,
    which then sends SIGTERM."""

    def __init__(self, config: uvicorn.Config, *, force_on_second_sigint: bool = True) -> None:
        super().__init__(config)
        self.force_on_second_sigint = force_on_second_sigint

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only; whoever runs this one stops it
            return
        hangup = getattr(signal, "SIGHUP", None)  # none on Windows
        # `nohup inferdeck serve` ignores SIGHUP on purpose: left so.
        if hangup is None or signal.getsignal(hangup) is signal.SIG_IGN:
            with super().capture_signals():
                yield
            return
        previous = signal.signal(hangup, self.handle_exit)
        try:
            with super().capture_signals():
                yield
        finally:
            signal.signal(hangup, previous)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in `_captured_signals`: uvicorn would raise it again after the drain.
        if self.should_exit and sig == signal.SIGINT and self.force_on_second_sigint:
            self.force_exit = True
        self.should_exit = True
