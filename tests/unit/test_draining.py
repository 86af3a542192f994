"""`DrainingServer`'s signal handling: SIGHUP joins SIGTERM and SIGINT as a drain, unless the
service was started with SIGHUP ignored (`nohup`), and every handler is put back after."""

from __future__ import annotations

import signal

import uvicorn

from engine.server.draining import DrainingServer


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called")


def _server() -> DrainingServer:
    return DrainingServer(uvicorn.Config(_app, lifespan="off"))


def test_sighup_drains_while_serving_and_its_handler_is_put_back() -> None:
    # As from a terminal, whatever this test runner inherited (a `nohup` ignores SIGHUP).
    inherited = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        server = _server()
        with server.capture_signals():
            handler = signal.getsignal(signal.SIGHUP)
            assert handler not in (signal.SIG_DFL, signal.SIG_IGN, None)
            signal.raise_signal(signal.SIGHUP)
        assert server.should_exit and not server.force_exit
        # Put back, and not raised again on the way out (this process would have ended).
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, inherited)


def test_a_sighup_ignored_by_nohup_stays_ignored() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with _server().capture_signals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_second_ctrl_c_stops_at_once_unless_turned_off() -> None:
    person = _server()
    person.handle_exit(signal.SIGINT, None)
    assert person.should_exit and not person.force_exit
    person.handle_exit(signal.SIGINT, None)
    assert person.force_exit
    worker = DrainingServer(uvicorn.Config(_app), force_on_second_sigint=False)
    worker.handle_exit(signal.SIGINT, None)
    worker.handle_exit(signal.SIGINT, None)
    assert worker.should_exit and not worker.force_exit
