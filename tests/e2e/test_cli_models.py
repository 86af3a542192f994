"""The real `inferdeck models add|list|check|remove` in a subprocess: a model added from a Python
file is listed with its check, checks ok, is removed and gone; each failure is one line and its
exit status (1 the model's fault, 2 a usage error), with no traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, CliResult

Cli = Callable[..., CliResult]
TEMPERATURE = REPO / "assets" / "examples" / "temperature.py"


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's models folder, by the environment (the data folder is shared by the session)."""
    folder = tmp_path / "models"
    monkeypatch.setenv("INFERDECK_MODELS_DIR", str(folder))
    return folder


def _clean(res: CliResult) -> None:
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr


@pytest.mark.slow
def test_add_list_check_remove(cli: Cli, models: Path) -> None:
    added = cli("models", "add", TEMPERATURE, "--json")
    _clean(added)
    assert added.code == 0, added.stderr
    summary = added.summary
    assert set(summary) == {
        "name",
        "version",
        "task",
        "folder",
        "examples",
        "max_abs_diff",
        "seconds",
    }
    assert summary["name"] == "temperature" and summary["task"] == "tabular-regression"
    assert Path(summary["folder"]) == models / "temperature"
    assert summary["examples"] == 3 and 0 <= summary["max_abs_diff"] <= 1e-4
    assert summary["seconds"] > 0
    progress = added.stderr.splitlines()
    assert progress[0] == "importing temperature.py"
    assert "checking 3 examples" in progress and f"added temperature to {models}" in progress

    listed = cli("models", "list", "--json")
    _clean(listed)
    assert listed.code == 0
    entries = {m["name"]: m for m in listed.summary["models"]}
    ours = entries["temperature"]
    assert ours["check"] == "ok" and ours["source"] == "user"
    assert ours["task"] == "tabular-regression" and ours["outputs"] == ["fahrenheit", "kelvin"]
    assert ours["folder"] == str(models / "temperature")
    assert ours["input_schema"]["required"] == ["celsius"]
    assert entries["iris"]["source"] == "built-in" and entries["iris"]["check"] == "ok"
    assert entries["iris"]["metrics"]["heldout_accuracy"] > 0.9
    assert listed.summary["problems"] == []

    checked = cli("models", "check", "temperature", "--json")
    _clean(checked)
    assert checked.code == 0
    assert checked.summary == {
        "name": "temperature",
        "folder": str(models / "temperature"),
        "task": "tabular-regression",
        "ok": True,
        "problems": [],
        "examples": 3,
    }

    again = cli("models", "add", TEMPERATURE, "--json")
    _clean(again)
    assert again.code == 1
    assert "already in" in again.summary["error"]
    assert again.stderr.strip().splitlines()[-1].startswith("inferdeck: a model named")

    removed = cli("models", "remove", "temperature")
    _clean(removed)
    assert removed.code == 0 and "removed temperature" in removed.stdout
    assert list(models.iterdir()) == []

    human = cli("models", "list")
    assert human.code == 0 and "temperature" not in human.stdout and "iris" in human.stdout
    gone = cli("models", "check", "temperature")
    assert gone.code == 2 and "no model named 'temperature'" in gone.stderr
    twice = cli("models", "remove", "temperature")
    assert twice.code == 2 and "no model named 'temperature'" in twice.stderr
    builtin = cli("models", "remove", "iris")
    assert builtin.code == 2 and "built-in model" in builtin.stderr
    _clean(builtin)


@pytest.mark.slow
def test_a_broken_folder_is_listed_and_checked_with_its_problem(
    cli: Cli, models: Path, tmp_path: Path
) -> None:
    broken = models / "bad"
    shutil.copytree(REPO / "engine" / "models" / "builtin" / "iris", broken)
    manifest = json.loads((broken / "model.json").read_text())
    manifest.update(name="bad", labels=["a", "b", "c", "d"])  # the network has 3 outputs
    (broken / "model.json").write_text(json.dumps(manifest))
    problem = "model.pt2 returns shape [1, 3] for 4 labels (a, b, c, d)"

    checked = cli("models", "check", "bad")
    _clean(checked)
    assert checked.code == 1
    assert checked.stdout.splitlines() == [f"{broken}: {problem}"]

    listed = cli("models", "list", "--json")
    assert listed.code == 0
    entry = next(m for m in listed.summary["models"] if m["folder"] == str(broken))
    assert entry["check"] == [problem] and entry["name"] == "bad"
    assert listed.summary["problems"] == [f"{broken}: {problem}"]

    # The user's code failing is one line with the file's name, exit 1; no such source, exit 2.
    source = tmp_path / "raises.py"
    source.write_text("import torch\nraise RuntimeError('no weights')\n")
    failed = cli("models", "add", source)
    _clean(failed)
    assert failed.code == 1
    assert failed.stderr.splitlines()[-1] == (
        "inferdeck: raises.py: importing it raised RuntimeError: no weights (line 2)"
    )
    missing = cli("models", "add", tmp_path / "nothing.py")
    assert missing.code == 2 and "no such file or folder" in missing.stderr
    _clean(missing)
