"""Every read from a target is bounded, and a timed load run keeps to its time (issue 11, 8-10).

Through the real `inferdeck load` command against `tests/fault_server.py`: an endless body and a
gzip bomb as model metadata and as answers end in a classified error with the command's peak
memory bounded (its `ru_maxrss`, read with `os.wait4` by a small wrapper; a watchdog kills it
first if its memory runs away, so an old client cannot take the machine down); a target that
honours or forces gzip is read, not reported as `bad_body`; a target that stalls cannot stretch
`--duration`. The span join's clock bound is checked on a hand-made exchange, the case a busy
core produces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from fault_server import FaultServer, Rule

from engine.remote.client import Exchange
from engine.remote.load import exchange_spans

ROW = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
# Far below what an unbounded read reaches (GBs in seconds), far above the command's own
# ~100-200 MB with a run's buffers.
RSS_LIMIT_MB = 400
WALL_LIMIT_S = 60.0  # an unbounded command is killed here, so the test ends either way


@dataclass
class Ran:
    """One watched command: output, peak memory, and whether the watchdog had to end it."""

    code: int
    stdout: str
    stderr: str
    peak_mb: float  # the command's peak resident memory
    killed_for: str | None  # "memory" or "time" when the watchdog ended it
    wall_s: float

    @property
    def summary(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no stdout; stderr: {self.stderr}"
        value = json.loads(lines[-1])
        assert isinstance(value, dict)
        return value


# The command runs under this small wrapper, which watches it and reports its peak. Measured
# from pytest itself, a child's `ru_maxrss` starts at pytest's own high-water mark (Linux
# carries the parent's peak across fork and exec), which hides the command's figure.
_WATCHED = """
import json, os, resource, signal, subprocess, sys, threading, time
limit_mb, wall_s = float(sys.argv[1]), float(sys.argv[2])
began = time.monotonic()
proc = subprocess.Popen(sys.argv[3:])
killed = []
done = threading.Event()

def rss_mb():
    try:
        with open(f"/proc/{proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0

def watchdog():
    while not done.wait(0.05):
        if rss_mb() > limit_mb:
            killed.append("memory")
        elif time.monotonic() - began > wall_s:
            killed.append("time")
        else:
            continue
        os.kill(proc.pid, signal.SIGKILL)
        return

guard = threading.Thread(target=watchdog, daemon=True)
guard.start()
_, status, usage = os.wait4(proc.pid, 0)
done.set()
guard.join()
report = {"code": os.waitstatus_to_exitcode(status), "peak_mb": usage.ru_maxrss / 1024,
          "killed": killed[0] if killed else None, "wall_s": time.monotonic() - began}
sys.stderr.write("\\n" + json.dumps(report) + "\\n")
"""


def run_load(db: Path, *args: str) -> Ran:
    """`inferdeck load ... --json` as a watched child process (see the module docstring)."""
    return run_command(db, "load", *args)


def run_command(db: Path, command: str, *args: str) -> Ran:
    """`inferdeck COMMAND ... --json`, measured and watched by `_WATCHED`."""
    command_line = [sys.executable, "-m", "engine.cli", command, *args, "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", _WATCHED, str(RSS_LIMIT_MB), str(WALL_LIMIT_S), *command_line],
        cwd=REPO,
        env={**os.environ, "INFERDECK_DB": str(db)},
        capture_output=True,
        text=True,
        timeout=WALL_LIMIT_S + 60,
    )
    stderr, _, last = proc.stderr.rstrip("\n").rpartition("\n")
    report = json.loads(last)
    return Ran(
        report["code"],
        proc.stdout,
        stderr.rstrip("\n") + ("\n" if stderr.strip() else ""),
        report["peak_mb"],
        report["killed"],
        report["wall_s"],
    )


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


# -- item 8: metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["endless", "bomb"])
@pytest.mark.parametrize(
    ("protocol", "path"), [("oip", "/v2/models/iris"), ("inferdeck", "/models/iris")]
)
def test_hostile_metadata_ends_as_too_large_with_memory_bounded(
    server: FaultServer, tmp_path: Path, kind: str, protocol: str, path: str
) -> None:
    # No payload: the command reads the model's metadata (OIP) or schema (inferdeck) first.
    server.add(Rule(kind, path=path))  # type: ignore[arg-type]
    ran = run_load(
        tmp_path / "m.db", server.url, "--protocol", protocol, "--model", "iris",
        "--concurrency", "1", "--requests", "3", "--timeout", "5",
    )  # fmt: skip
    assert ran.killed_for is None, f"killed for {ran.killed_for}, peak {ran.peak_mb:.0f} MB"
    assert ran.peak_mb < RSS_LIMIT_MB
    assert ran.code == 2, ran.stderr
    line = ran.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "too_large" in line and path in line, line


@pytest.mark.parametrize("kind", ["endless", "bomb"])
def test_hostile_health_bodies_are_not_read_past_the_probe_cap(
    server: FaultServer, tmp_path: Path, kind: str
) -> None:
    # Health is the status: a probe reads a little of the body raw (never inflated) and stops.
    server.add(Rule(kind))  # type: ignore[arg-type]
    ran = run_command(tmp_path / "p.db", "probe", server.url, "--model", "iris", "--count", "2")
    assert ran.killed_for is None, f"killed for {ran.killed_for}, peak {ran.peak_mb:.0f} MB"
    assert ran.peak_mb < RSS_LIMIT_MB
    assert ran.code == 0, ran.stderr
    assert ran.summary["final_state"] == "up", ran.summary


# -- item 8: answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        Rule("endless", path="/predict"),
        Rule("bomb", path="/predict"),  # endless once inflated
        Rule("bomb", path="/predict", bomb_mib=64),  # ~64 KB sent: small until inflated
    ],
    ids=["endless", "endless-bomb", "64MiB-bomb"],
)
def test_hostile_answers_are_too_large_with_memory_bounded(
    server: FaultServer, tmp_path: Path, rule: Rule
) -> None:
    server.add(rule)
    ran = run_load(
        tmp_path / "a.db", server.url, "--model", "iris", "--data", ROW,
        "--concurrency", "4", "--requests", "8", "--timeout", "5",
    )  # fmt: skip
    assert ran.killed_for is None, f"killed for {ran.killed_for}, peak {ran.peak_mb:.0f} MB"
    assert ran.peak_mb < RSS_LIMIT_MB
    assert ran.code == 1, ran.stderr
    summary = ran.summary
    assert summary["errors"] == {"too_large": 8}, summary


# -- item 9: compressed answers ---------------------------------------------------------------


@pytest.mark.parametrize("always", [False, True], ids=["honours-accept", "always-gzip"])
def test_a_gzip_target_is_read_not_bad_body(
    server: FaultServer, tmp_path: Path, always: bool
) -> None:
    server.add(Rule("gzip", always=always))
    ran = run_load(
        tmp_path / "g.db", server.url, "--model", "iris", "--data", ROW,
        "--rate", "40", "--requests", "20",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    summary = ran.summary
    assert (summary["ok"], summary["errors"]) == (20, {}), summary


def test_oip_metadata_compressed_anyway_is_read(server: FaultServer, tmp_path: Path) -> None:
    server.add(Rule("gzip", always=True))  # metadata and answers, whatever was asked for
    ran = run_load(
        tmp_path / "o.db", server.url, "--protocol", "oip", "--model", "iris",
        "--concurrency", "2", "--requests", "6",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert ran.summary["ok"] == 6


# -- item 10: --duration against a stalling target ----------------------------------------------


@pytest.mark.parametrize("stall", ["delay", "drip"], ids=["silent", "dripping"])
@pytest.mark.parametrize(
    "mode", [("--rate", "200"), ("--concurrency", "5")], ids=["open", "closed"]
)
def test_duration_holds_when_the_target_stalls(
    server: FaultServer, tmp_path: Path, mode: tuple[str, str], stall: str
) -> None:
    # Request 0 is the preflight (answered); every later one hangs: silent far beyond the
    # timeout, or dripping a byte every 0.1 s (no read timeout ever fires, only the deadline).
    server.add(Rule(stall, first=1, delay_s=120))  # type: ignore[arg-type]
    # A timeout longer than the run: no slot frees before the end, so the counts are exact.
    duration_s, timeout_s = 2.0, 3.0
    ran = run_load(
        tmp_path / "d.db", server.url, "--model", "iris", "--data", ROW, *mode,
        "--duration", str(duration_s), "--timeout", str(timeout_s), "--max-in-flight", "20",
    )  # fmt: skip
    assert ran.killed_for is None
    assert ran.code == 1, ran.stderr
    summary = ran.summary
    # The run's own clock: its duration, one timeout, and slack for a busy machine.
    assert summary["duration_s"] <= duration_s + timeout_s + 1.5, summary
    assert summary["ok"] == 0 and set(summary["errors"]) == {"timeout"}, summary
    if mode[0] == "--rate":
        # 400 were due in 2 s at 200/s; 20 slots were held throughout: the rest not sent.
        assert (summary["sent"], summary["not_sent"]) == (20, 380), summary
    else:
        assert (summary["sent"], summary["not_sent"]) == (5, 0), summary
    assert summary["sent"] == summary["accepted"]  # every sent request has its row


# -- the span join under a busy core ----------------------------------------------------------


def test_a_late_send_mark_still_holds_the_servers_stages_in_the_wait() -> None:
    """What a busy core does: the client reads "send complete" 20 ms after the bytes left (the
    server ran first), so its measured wait (5 ms) is shorter than the server's 12 ms."""
    ms = 1_000_000
    origin = 1_000 * ms
    events = {
        "http11.send_request_headers.started": origin + 1 * ms,
        "http11.send_request_body.complete": origin + 22 * ms,  # read late
    }
    ex = Exchange(
        200, b"{}", None, "", "id", "validate;dur=1, inference;dur=8, write;dur=3",
        start_ns=origin, headers_ns=origin + 27 * ms, end_ns=origin + 28 * ms, events=events,
    )  # fmt: skip
    spans = {s[0]: s for s in exchange_spans(ex, origin)}
    wait, send = spans["wait"], spans["send"]
    assert send[1] == 1_000 and send[1] + send[2] == wait[1]  # send ends where the wait begins
    assert wait[1] + wait[2] == 27_000  # the headers' mark is kept
    for name in ("server.validate", "server.inference", "server.write"):
        span = spans[name]
        assert wait[1] <= span[1] and span[1] + span[2] <= wait[1] + wait[2], (name, spans)
