"""Headless is Qt-free: every command but `gui` runs in a process where the desktop app's
packages cannot be imported (nor the install groups the command does not need), and a command
whose group is missing says so in one line that names the group, with exit status 2.

The packages are made unimportable by a `sitecustomize` on PYTHONPATH that puts a finder first
on `sys.meta_path`: an import of a blocked package fails as if it were not installed, and the
attempt is written down, so a test can also say a command never even tried one.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, CliResult
from live_server import BODY, ServeProcess, free_port

from engine.cli import main as launcher

QT = ("PySide6", "shiboken6", "qasync", "pyqtgraph")
REMOTE = ("httpx", "httpx_aiohttp", "aiohttp", "keyring")
SERVE = ("fastapi", "starlette", "uvicorn")
# `pip install inferdeck` with no group: enough for predict, runs, export and models.
EVERY_GROUP = QT + REMOTE + SERVE
IRIS_ROW = BODY["input_payload"]

BLOCKER = '''\
"""Test helper: the packages named in INFERDECK_TEST_BLOCK cannot be imported."""
import os
import sys

_BLOCKED = frozenset(filter(None, os.environ.get("INFERDECK_TEST_BLOCK", "").split(",")))
_LOG = os.environ.get("INFERDECK_TEST_BLOCK_LOG")


class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in _BLOCKED:
            return None
        if _LOG:
            with open(_LOG, "a", encoding="utf-8") as log:
                log.write(name + "\\n")
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, _NotInstalled())
'''


class Blocked:
    """Runs `python -m engine.cli` (the tests' interpreter, this checkout) with `packages`
    unimportable; `attempted` is what the processes tried to import of them."""

    def __init__(self, tmp_path: Path, packages: tuple[str, ...]) -> None:
        folder = tmp_path / "blocker"
        folder.mkdir(exist_ok=True)
        (folder / "sitecustomize.py").write_text(BLOCKER)
        self.log = folder / "attempted.txt"
        self.db = tmp_path / "inferdeck.db"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(folder), os.environ.get("PYTHONPATH")])
            ),
            "INFERDECK_TEST_BLOCK": ",".join(packages),
            "INFERDECK_TEST_BLOCK_LOG": str(self.log),
            "INFERDECK_DB": str(self.db),
        }
        self.argv = [sys.executable, "-m", "engine.cli"]

    def __call__(
        self, *args: str | os.PathLike[str], env: dict[str, str] | None = None
    ) -> CliResult:
        proc = subprocess.run(
            [*self.argv, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env or self.env,
            cwd=REPO,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    @property
    def attempted(self) -> set[str]:
        return set(self.log.read_text().split()) if self.log.exists() else set()


def one_line(res: CliResult) -> str:
    """The single stderr line of a refused command (no traceback, no usage)."""
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_the_blocker_makes_a_package_look_uninstalled(tmp_path: Path) -> None:
    blocked = Blocked(tmp_path, QT)
    proc = subprocess.run(
        [sys.executable, "-c", "import PySide6"],
        capture_output=True,
        text=True,
        env=blocked.env,
        timeout=60,
    )
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr, proc.stderr
    assert blocked.attempted == {"PySide6"}


@pytest.mark.slow
def test_models_list_needs_no_group(tmp_path: Path) -> None:
    blocked = Blocked(tmp_path, EVERY_GROUP)
    res = blocked("models", "list", "--json")
    assert res.code == 0, res.stderr
    assert {"iris", "digits"} <= {model["name"] for model in res.summary["models"]}
    assert blocked.attempted == set()  # not one optional package was even looked for


@pytest.mark.slow
def test_predict_and_runs_need_no_group(tmp_path: Path) -> None:
    blocked = Blocked(tmp_path, EVERY_GROUP)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(f"{json.dumps(IRIS_ROW)}\n" * 20)
    res = blocked("predict", rows, "--model", "iris", "--json")
    assert res.code == 0, res.stderr
    run_id = res.summary["run_id"]
    assert res.summary["ok"] == 20
    with sqlite3.connect(blocked.db) as conn:
        stored = conn.execute(
            "SELECT status, count(*) FROM requests WHERE run_id = ? GROUP BY status", (run_id,)
        ).fetchall()
    assert stored == [("ok", 20)]
    listed = blocked("runs", "list")
    assert listed.code == 0, listed.stderr
    assert run_id in listed.stdout
    shown = blocked("runs", "show", run_id[:8], "--json")
    assert shown.code == 0 and shown.summary["run_id"] == run_id, shown.stderr
    assert blocked.attempted == set()


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_serve_needs_neither_qt_nor_the_remote_group(tmp_path: Path, sig: int) -> None:
    blocked = Blocked(tmp_path, QT + REMOTE)
    served = ServeProcess(tmp_path / "serve.log", argv=blocked.argv, env=blocked.env)
    try:
        request_id = served.predict()
    finally:
        code, stderr = served.stop(sig)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert "Application shutdown complete" in stderr, stderr
    assert code == 0, stderr  # every stop signal is a drain that ends in exit 0
    with sqlite3.connect(blocked.db) as conn:
        (status,) = conn.execute(
            "SELECT status FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        (run_status,) = conn.execute("SELECT status FROM runs WHERE kind = 'serve'").fetchone()
    assert status == "ok" and run_status == "done"  # the writer was flushed on the way out
    assert blocked.attempted == set()


@pytest.mark.slow
@pytest.mark.parametrize("words", [("gui",), ()], ids=["gui", "no-command"])
@pytest.mark.parametrize("display", ["offscreen", "none"])
def test_the_app_without_qt_names_the_desktop_group(
    tmp_path: Path, words: tuple[str, ...], display: str
) -> None:
    blocked = Blocked(tmp_path, QT)
    env = {k: v for k, v in blocked.env.items() if k not in {"DISPLAY", "WAYLAND_DISPLAY"}}
    if display == "none":
        env.pop("QT_QPA_PLATFORM", None)
    else:
        env["QT_QPA_PLATFORM"] = display
    res = blocked(*words, env=env)
    assert res.code == 2
    line = one_line(res)
    assert line.startswith("inferdeck: the desktop app needs "), line
    assert line.endswith("pip install 'inferdeck[desktop]'"), line


@pytest.mark.slow
@pytest.mark.parametrize("package", ["fastapi", "uvicorn"])
def test_serve_without_its_group_names_it(tmp_path: Path, package: str) -> None:
    blocked = Blocked(tmp_path, (*QT, package))
    res = blocked("serve", "--port", str(free_port()))
    assert res.code == 2
    assert one_line(res) == (
        f"inferdeck: `inferdeck serve` needs {package}, which this installation lacks: "
        "pip install 'inferdeck[serve]'"
    )


@pytest.mark.slow
@pytest.mark.parametrize("words", [("load",), ("probe",), ("targets", "list")], ids=str)
def test_remote_commands_without_their_group_name_it(
    tmp_path: Path, words: tuple[str, ...]
) -> None:
    blocked = Blocked(tmp_path, EVERY_GROUP)
    res = blocked(*words)
    assert res.code == 2
    line = one_line(res)
    assert line.startswith(f"inferdeck: `inferdeck {words[0]}` needs "), line
    assert line.endswith("pip install 'inferdeck[remote]'"), line


@pytest.mark.slow
def test_the_launcher_helps_and_refuses_on_a_core_install(tmp_path: Path) -> None:
    blocked = Blocked(tmp_path, EVERY_GROUP)
    helped = blocked("--help")
    assert helped.code == 0, helped.stderr
    for name, (help_text, _module) in launcher.COMMANDS.items():
        assert f"    {name:10}{help_text}" in helped.stdout, helped.stdout
    for words, error in [
        (("bogus",), "inferdeck: argument COMMAND: invalid choice: 'bogus'"),
        (("predict",), "inferdeck: the following arguments are required:"),
        (("predict", "x.jsonl", "--bogus"), "inferdeck: unrecognized arguments: --bogus"),
    ]:
        res = blocked(*words)
        assert res.code == 2
        # The usage (argparse wraps a long one onto indented lines), then one error line.
        usage, *wrapped, line = res.stderr.strip().splitlines()
        assert usage.startswith("usage: inferdeck ") and line.startswith(error), res.stderr
        assert all(part.startswith(" ") for part in wrapped), res.stderr
    predict_help = blocked("predict", "--help")
    assert predict_help.code == 0 and "--model" in predict_help.stdout, predict_help.stderr
    assert blocked.attempted == set()


def test_the_command_list_matches_each_commands_own_help() -> None:
    """`inferdeck --help` lists the commands from COMMANDS without importing them: the list
    must read the same when a command's own module has built its parser and help."""
    listed = launcher.build_parser().format_help()
    for name in launcher.COMMANDS:
        assert launcher.build_parser(only=name).format_help() == listed, name
