"""`inferdeck serve --workers N`: load the models once, then fork the workers.

The parent builds the app and loads every model before it forks, so the workers share the
loaded weights and the imported libraries page for page (copy-on-write), as gunicorn's
`--preload` does: four workers cost far less than four times one. Each worker then runs its own
uvicorn server, engine, executor and database connection on the one listening socket.

torch across fork: the parent runs torch with one intra-op thread, so no thread pool exists to
be copied half-alive into a child; each worker starts its own threads on first use.

Signals: SIGTERM, SIGINT or SIGHUP to the parent sends SIGTERM to every worker once; each
drains (stops accepting, lets requests in flight finish, commits) and exits, and the parent
exits when all have. A worker that dies on its own is replaced from the parent's loaded models;
one that cannot start (its lifespan failed), or workers that keep dying (`CRASH_LIMIT` within
`CRASH_WINDOW_S`), stop the service with uvicorn's start-up failure status.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

import uvicorn

from engine.server.draining import DrainingServer

log = logging.getLogger(__name__)

EXIT_STARTUP_FAILED = 3  # uvicorn's own status when an application's start-up fails
# SIGHUP too: a closed terminal or session must drain the workers, not orphan them.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_WATCHED = {*STOP_SIGNALS, signal.SIGCHLD}
_PR_SET_PDEATHSIG = 1
# Workers that die this many times within this many seconds are not replaced again: something
# in their start-up or environment fails every time, and forking on would only spin.
CRASH_LIMIT = 5
CRASH_WINDOW_S = 30.0


def _die_with_parent() -> None:
    """Ask Linux to send this worker SIGTERM if the parent dies (even by SIGKILL): an orphaned
    worker would keep the port and the database file."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed parent
        pass


def _run_worker(config: uvicorn.Config, sock: socket.socket) -> int:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in _WATCHED:
        signal.signal(sig, signal.SIG_DFL)
    _die_with_parent()
    server = DrainingServer(config, force_on_second_sigint=False)
    try:
        server.run(sockets=[sock])
    except SystemExit:
        pass  # uvicorn's way out of a failed start-up (it has logged why): judged below
    except BaseException:
        log.exception("worker %d stopped on an error", os.getpid())
        return 1 if server.started else EXIT_STARTUP_FAILED
    return 0 if server.started else EXIT_STARTUP_FAILED


def block_signals() -> None:
    """Hold stop signals until the supervisor reads them: call before loading the models, so
    a SIGTERM during loading still stops the service through its cleanup."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)


def stop_requested() -> bool:
    """Whether a stop signal arrived while signals were blocked (before any worker exists)."""
    return bool(signal.sigpending() & STOP_SIGNALS)


class Supervisor:
    """The parent of `--workers N`: forks the workers, replaces one that dies, and stops them
    all on SIGTERM or SIGINT."""

    def __init__(
        self,
        config: uvicorn.Config,
        sock: socket.socket,
        workers: int,
        on_worker_exit: Callable[[int], None] = lambda pid: None,
        on_worker_start: Callable[[int], None] = lambda slot: None,
    ) -> None:
        """`on_worker_exit(pid)` runs in the parent after each worker is reaped (the metrics
        drop a dead worker's live gauges there); `on_worker_start(slot)` in each new worker
        just after the fork, with its slot: 0..workers-1, a replacement taking the slot of the
        worker it replaces (the OIP statistics table's block, see oip.statistics)."""
        self.config = config
        self.sock = sock
        self.workers = workers
        self.on_worker_exit = on_worker_exit
        self.on_worker_start = on_worker_start
        self.children: dict[int, int] = {}  # pid: slot
        self.stopping = False
        self.crashes: list[float] = []  # when workers died on their own, recently

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = EXIT_STARTUP_FAILED
            try:
                self.on_worker_start(slot)
                code = _run_worker(self.config, self.sock)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = slot

    def _stop_all(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _reap(self) -> int | None:
        """Collect exited workers and replace the ones that crashed; the service's exit
        status once it must stop (a worker could not start, or workers keep crashing)."""
        crashed: list[int] = []  # the slots of workers that died on their own
        failed: int | None = None
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                break
            if pid == 0:
                break
            slot = self.children.pop(pid, None)
            self.on_worker_exit(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                continue
            if code == EXIT_STARTUP_FAILED:
                failed = code
            else:
                log.warning("worker %d exited (status %d)", pid, code)
                if slot is not None:
                    crashed.append(slot)
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW_S]
        self.crashes += [now] * len(crashed)
        if failed is None and len(self.crashes) >= CRASH_LIMIT:
            log.error("%d workers crashed within %g s: stopping", len(self.crashes), CRASH_WINDOW_S)
            failed = EXIT_STARTUP_FAILED
        if failed is not None:
            self._stop_all()
            return failed
        # Replaced only now, and not once a stop was asked for: the loop above never forks,
        # so a signal waiting to be read is read first.
        for slot in crashed:
            if signal.sigpending() & STOP_SIGNALS:
                break
            self._spawn(slot)
        return None

    def run(self) -> int:
        """Fork the workers and wait until all have stopped; 0, or 3 when one could not start
        (or they kept crashing). Stop signals should already be blocked (`block_signals`), so
        that one sent while the models loaded is read here, not lost."""
        # Blocked and waited for below: no handler runs in the middle of a fork.
        signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
        gc.collect()
        gc.freeze()  # the collector would otherwise write to every shared page it walks
        if stop_requested():
            return 0  # asked to stop while the models loaded: no worker was started
        for slot in range(self.workers):
            self._spawn(slot)
        status = 0
        while self.children:
            info = signal.sigwaitinfo(_WATCHED)
            if info.si_signo in STOP_SIGNALS:
                log.info("stopping %d workers (signal %d)", len(self.children), info.si_signo)
                self._stop_all()
            failed = self._reap()
            if failed is not None:
                status = failed
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _WATCHED)
        return status
