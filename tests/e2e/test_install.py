"""A real install: a wheel built from this checkout, installed (not editable) into a fresh
virtual environment that has the core and `serve` groups' packages but no Qt and no `remote`
group, then `inferdeck` run from a folder outside the checkout.

Nothing is downloaded: the fresh environment sees the test environment's installed packages
through a folder of links to them, less the ones left out on purpose and this project's own
editable install (a path line in a `.pth` file only extends sys.path; the `.pth` files of the
folder it names, the editable install's finder among them, are not run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from zipfile import ZipFile

import pytest
from conftest import REPO, CliResult
from live_server import BODY, ServeProcess

# Left out of the fresh environment, as a `pip install 'inferdeck[serve]'` would leave them.
LEFT_OUT = {
    "pyside6",
    "pyside6_essentials",
    "pyside6_addons",
    "shiboken6",
    "qasync",
    "pyqtgraph",
    "httpx",
    "httpx_aiohttp",
    "aiohttp",
    "keyring",
    "inferdeck",  # the checkout's own (editable) install
}
# What the wheel is built from: the packaging files and the shipped packages.
SOURCES = ("pyproject.toml", "README.md", "engine", "storage", "gui")


@dataclass
class Installed:
    """The fresh environment with the wheel installed: its interpreter and `inferdeck`, a
    working folder outside the checkout, and the environment variables to run them with."""

    venv: Path
    wheel: Path
    work: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def inferdeck(self) -> Path:
        return self.venv / "bin" / "inferdeck"

    def __call__(self, *args: str | os.PathLike[str]) -> CliResult:
        proc = subprocess.run(
            [self.inferdeck, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env,
            cwd=self.work,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)


def _run(*argv: str | os.PathLike[str], cwd: Path) -> None:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    assert proc.returncode == 0, f"{argv}: {proc.stdout}\n{proc.stderr}"


def _package_name(entry: str) -> str:
    """`PySide6_Essentials-6.9.1.dist-info` -> `pyside6_essentials`; `qasync.py` -> `qasync`."""
    return entry.split("-")[0].split(".")[0].lower()


def _linked_dependencies(into: Path) -> Path:
    """A folder of links to the test environment's installed packages, less LEFT_OUT and
    every `.pth` file and editable-install finder."""
    site_packages = Path(sysconfig.get_paths()["purelib"])
    into.mkdir()
    for entry in site_packages.iterdir():
        if (
            _package_name(entry.name) in LEFT_OUT
            or entry.name.startswith("__editable__")
            or entry.suffix == ".pth"
        ):
            continue
        (into / entry.name).symlink_to(entry)
    return into


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run(*pip, "wheel", source, "--no-deps", "--no-build-isolation", "-w", root, cwd=root)
    (wheel,) = root.glob("inferdeck-*.whl")
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    python = venv / "bin" / "python"
    # pip runs from the test environment but installs into the fresh one.
    _run(*pip, "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=root)
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = _linked_dependencies(root / "deps")
    (Path(site_packages) / "test-dependencies.pth").write_text(f"{deps}\n")
    work = root / "work"
    work.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "INFERDECK_MODELS_DIR"}
    }
    env["INFERDECK_DB"] = str(work / "inferdeck.db")
    return Installed(venv, wheel, work, env)


@pytest.mark.slow
def test_the_wheel_ships_the_models_and_only_the_packages(installed: Installed) -> None:
    names = ZipFile(installed.wheel).namelist()
    for model in ("iris", "digits"):
        assert f"engine/models/builtin/{model}/model.json" in names
        assert f"engine/models/builtin/{model}/model.pt2" in names
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"engine", "storage", "gui"}


@pytest.mark.slow
def test_the_installed_package_is_the_one_that_runs(installed: Installed) -> None:
    probe = (
        "import importlib.util, json, sys, engine; "
        "print(json.dumps({'engine': engine.__file__, "
        "'finders': [type(f).__name__ for f in sys.meta_path], "
        "'qt': importlib.util.find_spec('PySide6') is not None, "
        "'httpx': importlib.util.find_spec('httpx') is not None}))"
    )
    proc = subprocess.run(
        [installed.python, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env=installed.env,
        cwd=installed.work,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert Path(seen["engine"]).is_relative_to(installed.venv), seen
    assert not any("Editable" in finder for finder in seen["finders"]), seen
    assert seen["qt"] is False and seen["httpx"] is False, seen


@pytest.mark.slow
def test_models_list_finds_the_built_in_models_in_the_install(installed: Installed) -> None:
    res = installed("models", "list", "--json")
    assert res.code == 0, res.stderr
    folders = {model["name"]: Path(model["folder"]) for model in res.summary["models"]}
    assert {"iris", "digits"} <= set(folders)
    for name in ("iris", "digits"):
        assert folders[name].is_relative_to(installed.venv), folders
        assert not folders[name].is_relative_to(REPO), folders


@pytest.mark.slow
def test_predict_runs_a_built_in_model_from_the_install(installed: Installed) -> None:
    rows = installed.work / "rows.jsonl"
    rows.write_text(f"{json.dumps(BODY['input_payload'])}\n" * 10)
    res = installed("predict", "rows.jsonl", "--model", "iris", "--json")
    assert res.code == 0, res.stderr
    assert res.summary["ok"] == 10 and res.summary["status"] == "done"


@pytest.mark.slow
def test_serve_answers_from_the_install(installed: Installed) -> None:
    served = ServeProcess(
        installed.work / "serve.log",
        argv=[str(installed.inferdeck)],
        env=installed.env,
        cwd=installed.work,
    )
    try:
        request_id = served.predict()
    finally:
        code, stderr = served.stop(signal.SIGINT)
    assert code == 0 and "Traceback" not in stderr, stderr
    with sqlite3.connect(installed.work / "inferdeck.db") as conn:
        (status,) = conn.execute(
            "SELECT status FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
    assert status == "ok"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("words", "group"), [(("gui",), "desktop"), ((), "desktop"), (("load",), "remote")]
)
def test_a_missing_group_is_named_by_the_install(
    installed: Installed, words: tuple[str, ...], group: str
) -> None:
    res = installed(*words)
    assert res.code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].endswith(f"pip install 'inferdeck[{group}]'"), res.stderr
