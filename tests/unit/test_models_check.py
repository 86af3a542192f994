"""`models check` in process (`engine.models.check_folder`) on every kind of broken model folder,
and the registry skipping that folder with the same lines (`ModelRegistry.discover` then
`load_all`, as `serve`, `predict` and the app start)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from model_folders import classifier_folder, regression_folder, text_folder
from torch import nn

from engine.models import ModelRegistry, builtin_models_dir, check_folder, read_manifest
from engine.models.examples import model_example


@pytest.fixture(autouse=True)
def _no_env_models_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERDECK_MODELS_DIR", raising=False)


def _export(module: nn.Module, example: torch.Tensor, folder: Path, dynamic: bool = True) -> None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes = ({0: batch},) if dynamic else None
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=shapes)
    torch.export.save(program, str(folder / "model.pt2"))


def _edit_manifest(folder: Path, **changes: object) -> None:
    path = folder / "model.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _examples(folder: Path, *lines: object) -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / "examples.jsonl").write_text(text, encoding="utf-8")


class _Divide(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x], dim=1) / 0


class _Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.cat([x, x], dim=1))


def bad_manifest_fields(folder: Path) -> None:
    regression_folder(folder)
    _edit_manifest(
        folder, task="regression", inputs=[{"name": "celsius", "type": "number"}], colour=1
    )


def missing_artifact(folder: Path) -> None:
    regression_folder(folder)
    (folder / "model.pt2").unlink()


def random_bytes_artifact(folder: Path) -> None:
    regression_folder(folder)
    (folder / "model.pt2").write_bytes(os.urandom(4096))


def state_dict_artifact(folder: Path) -> None:
    regression_folder(folder)
    torch.save(nn.Linear(1, 2).state_dict(), folder / "model.pt2")


def wrong_input_width(folder: Path) -> None:
    classifier_folder(folder)  # exported for [batch, 2]
    inputs = [{"name": name, "type": "float"} for name in ("a", "b", "c")]
    _edit_manifest(folder, inputs=inputs)


def float_model_given_ids(folder: Path) -> None:
    text_folder(folder)  # max_tokens 8
    _export(nn.Linear(8, 2), torch.zeros(2, 8), folder)


def fixed_batch(folder: Path) -> None:
    regression_folder(folder)
    _export(nn.Linear(1, 2), torch.zeros(2, 1), folder, dynamic=False)


def more_labels_than_outputs(folder: Path) -> None:
    classifier_folder(folder)
    _edit_manifest(folder, labels=["negative", "positive", "zero"])


def more_outputs_than_columns(folder: Path) -> None:
    regression_folder(folder)
    outputs = [{"name": "fahrenheit"}, {"name": "kelvin"}, {"name": "rankine"}]
    _edit_manifest(folder, outputs=outputs)


def divides_by_zero(folder: Path) -> None:
    regression_folder(folder)
    _export(_Divide(), torch.ones(2, 1), folder)
    _examples(folder, {"celsius": 1.0}, {"celsius": 0.0})


def log_of_negative(folder: Path) -> None:
    regression_folder(folder)
    _export(_Log(), torch.ones(2, 1), folder)
    _examples(folder, {"celsius": 2.0}, {"celsius": -1.0}, {"celsius": 3.0})


def missing_tokenizer(folder: Path) -> None:
    text_folder(folder)
    (folder / "tokenizer.json").unlink()


def garbage_tokenizer(folder: Path) -> None:
    text_folder(folder)
    (folder / "tokenizer.json").write_text("{ this is not a tokenizer", encoding="utf-8")


def bad_examples(folder: Path) -> None:
    regression_folder(folder)
    _examples(folder, {"celsius": 20.0}, {"celsius": "hot"}, "[1, 2]", "{not json", {"c": 1})


def unreadable_artifact_and_bad_example(folder: Path) -> None:
    random_bytes_artifact(folder)
    _examples(folder, {"celsius": 20.0}, {"celsius": -300.0}, {"celsius": 30.0})


BROKEN: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "bad manifest fields": (
        bad_manifest_fields,
        [
            "model.json task: Input should be 'tabular-classification', 'tabular-regression', "
            "'image-classification' or 'text-classification'",
            "model.json inputs.0.type: Input should be 'float', 'int', 'bool', 'enum', 'image' "
            "or 'text'",
            "model.json colour: Extra inputs are not permitted",
        ],
    ),
    "missing artifact": (missing_artifact, ["missing model.pt2"]),
    "random bytes artifact": (
        random_bytes_artifact,
        ["model.pt2: not a torch.export archive (not a zip file)"],
    ),
    "state dict artifact": (
        state_dict_artifact,
        [
            "model.pt2: a torch.save file (pickled tensors), not a torch.export archive: "
            "save the module with torch.export.save"
        ],
    ),
    "wrong input width": (
        wrong_input_width,
        ["model.pt2 takes rows of 2 values (dimension 1); the manifest's 3 inputs make 3"],
    ),
    "float model given ids": (
        float_model_given_ids,
        ["model.pt2 takes float32 input; the engine passes int64 token ids"],
    ),
    "fixed batch": (
        fixed_batch,
        [
            "model.pt2 takes a fixed batch of 2 (dimension 0); export it with a dynamic batch "
            "dimension, torch.export.Dim"
        ],
    ),
    "more labels than outputs": (
        more_labels_than_outputs,
        ["model.pt2 returns shape [1, 2] for 3 labels (negative, positive, zero)"],
    ),
    "more outputs than columns": (
        more_outputs_than_columns,
        ["model.pt2 returns shape [1, 2] for 3 outputs (fahrenheit, kelvin, rankine)"],
    ),
    "divides by zero": (
        divides_by_zero,
        [
            "examples.jsonl line 1: non-finite output (fahrenheit = inf, kelvin = inf)",
            "examples.jsonl line 2: non-finite output (fahrenheit = nan, kelvin = nan)",
        ],
    ),
    "log of negative": (
        log_of_negative,
        ["examples.jsonl line 2: non-finite output (fahrenheit = nan, kelvin = nan)"],
    ),
    "missing tokenizer": (missing_tokenizer, ["tokenizer.json: missing"]),
    "garbage tokenizer": (garbage_tokenizer, ["tokenizer.json: not a tokenizers file ("]),
    "bad examples": (
        bad_examples,
        [
            "examples.jsonl line 2: celsius: Input should be a valid number, unable to parse "
            "string as a number",
            "examples.jsonl line 3: not a JSON object",
            "examples.jsonl line 4: not JSON (",
            "examples.jsonl line 5: celsius: Field required; c: Extra inputs are not permitted",
        ],
    ),
    # The artifact's one line, and the example's own fault, not "cannot run" for each example.
    "unreadable artifact and a bad example": (
        unreadable_artifact_and_bad_example,
        [
            "model.pt2: not a torch.export archive (not a zip file)",
            "examples.jsonl line 2: celsius: Input should be greater than or equal to -273.15",
        ],
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_folder_is_named_alike_by_check_and_the_registry(
    tmp_path: Path, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    make, expected = BROKEN[case]
    models = tmp_path / "models"
    folder = models / "broken"
    make(folder)

    check = check_folder(folder)

    assert not check.ok
    assert len(check.problems) == len(expected), check.problems
    for problem, start in zip(check.problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)
        assert "\n" not in problem
    assert check.lines() == [f"{folder}: {problem}" for problem in check.problems]

    registry = ModelRegistry.discover(models)
    registry.load_all()
    assert [p for p in registry.problems if p.startswith(f"{models}")] == check.lines()
    assert [c.folder for c in registry.broken] == [folder]
    assert "temperature" not in registry.names() and "review" not in registry.names()
    assert {"iris", "digits"} <= set(registry.names())  # the others still load
    err = capfd.readouterr().err
    assert "Traceback" not in err and "def forward" not in err


def test_a_manifest_problem_reads_as_read_manifest_says_it(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    bad_manifest_fields(folder)
    with pytest.raises(ValueError) as info:
        read_manifest(folder)
    assert str(info.value) == check_folder(folder).lines()[0]


@pytest.mark.parametrize(
    ("make", "examples"),
    [(regression_folder, 0), (classifier_folder, 0), (text_folder, 0)],
)
def test_a_good_folder_checks_ok(
    tmp_path: Path, make: Callable[[Path], Path], examples: int
) -> None:
    check = check_folder(make(tmp_path / "m"))
    assert check.ok, check.problems
    assert check.examples == examples


def test_a_good_folder_runs_its_stored_examples(tmp_path: Path) -> None:
    folder = regression_folder(tmp_path / "m")
    _examples(folder, *({"celsius": float(c)} for c in range(5)))
    check = check_folder(folder)
    assert check.ok and check.examples == 5
    # Stored examples come before held-out rows as the form's first values.
    (folder / "heldout.csv").write_text("celsius,label\n-7,x\n", encoding="utf-8")
    assert model_example(check.manifest, folder) == {"celsius": 0.0}  # type: ignore[arg-type]
    (folder / "examples.jsonl").unlink()
    assert model_example(check.manifest, folder) == {"celsius": -7.0}  # type: ignore[arg-type]
    assert check_folder(folder).examples == 1  # the held-out row, its label left out


@pytest.mark.parametrize("name", ["iris", "digits", "langid"])
def test_the_builtins_check_ok_on_their_heldout_rows(name: str) -> None:
    check = check_folder(builtin_models_dir() / name)
    assert check.ok, check.problems
    assert check.examples == 8


def test_a_user_model_with_a_taken_name_is_reported(tmp_path: Path) -> None:
    models = tmp_path / "models"
    regression_folder(models / "my-iris", name="iris")
    registry = ModelRegistry.discover(models)
    assert registry.problems == [
        f"{models / 'my-iris'}: name 'iris' is taken by {builtin_models_dir() / 'iris'}"
    ]
    assert registry.get("iris") is not None
    assert registry.get("iris").folder == builtin_models_dir() / "iris"  # type: ignore[union-attr]


def test_discovery_reads_the_users_data_folder_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.models import default_models_dir
    from engine.models.registry import user_data_models_dir

    data = tmp_path / "data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    assert default_models_dir() == user_data_models_dir() == data / "inferdeck" / "models"
    regression_folder(user_data_models_dir() / "temperature")
    env = tmp_path / "env"
    classifier_folder(env / "sign")
    monkeypatch.setenv("INFERDECK_MODELS_DIR", str(env))
    assert default_models_dir() == env
    # The same folder named twice (serve --models-dir sets the environment too) is read once.
    registry = ModelRegistry.discover(env)
    assert {"temperature", "sign", "iris"} <= set(registry.names())
    assert registry.problems == []
