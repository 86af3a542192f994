"""`models add` in process (`engine.models.packaging.add_model`): a model from a Python file and
from a folder for each task, checked by predicting through the registry as the engine does; and
every way a Python file can be wrong, each refused in one line with nothing left behind."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_folders import classifier_folder, regression_folder, text_folder

from engine.models import ModelRegistry, builtin_models_dir
from engine.models.examples import model_example
from engine.models.packaging import TOLERANCE, AddResult, PackagingError, add_model
from engine.models.runtime import LoadedModel

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "examples"


@pytest.fixture(autouse=True)
def _no_env_models_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERDECK_MODELS_DIR", raising=False)


def _loaded(models_dir: Path, name: str) -> LoadedModel:
    """The model as the engine gets it: discovered, loaded and checked (`load_all`)."""
    registry = ModelRegistry.discover(models_dir)
    registry.load_all()
    ours = [p for p in registry.problems if p.startswith(str(models_dir))]
    assert ours == []
    model = registry.get(name)
    assert model is not None, registry.names()
    assert model.folder == models_dir / name
    return model


def _predict(model: LoadedModel, row: dict[str, Any]) -> np.ndarray:
    out = model.predict_batch([model.features(model.inputs.model_validate(row))])
    return np.asarray(out[0])


def _label(model: LoadedModel, row: dict[str, Any]) -> str:
    return model.labels[int(_predict(model, row).argmax())]


def _write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def _only_the_model_in(models_dir: Path, name: str) -> None:
    """The models folder holds the new model and nothing half-written."""
    assert sorted(p.name for p in models_dir.iterdir()) == [name]


def _agrees(result: AddResult) -> None:
    assert result.max_abs_diff is not None
    assert 0.0 <= result.max_abs_diff <= TOLERANCE


# From a Python file, each task ---------------------------------------------------------------


def test_regression_from_python_file_predicts_exactly(tmp_path: Path) -> None:
    models = tmp_path / "models"
    steps: list[str] = []
    result = add_model(EXAMPLES_DIR / "temperature.py", models, progress=steps.append)

    assert steps == [
        "importing temperature.py",
        "building the module",
        "exporting",
        "checking 3 examples",
        f"added temperature to {models}",
    ]
    assert (result.name, result.version, result.task) == ("temperature", "1", "tabular-regression")
    assert result.folder == models / "temperature" and result.examples == 3
    _agrees(result)
    _only_the_model_in(models, "temperature")
    files = sorted(p.name for p in result.folder.iterdir())
    assert files == ["examples.jsonl", "model.json", "model.pt2"]
    written = json.loads((result.folder / "model.json").read_text(encoding="utf-8"))
    assert written["outputs"][0] == {
        "name": "fahrenheit",
        "unit": "°F",
        "description": "C × 1.8 + 32.",
    }
    stored = (result.folder / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in stored] == [
        {"celsius": 100.0},
        {"celsius": 0.0},
        {"celsius": -40.0},
    ]

    model = _loaded(models, "temperature")
    np.testing.assert_allclose(_predict(model, {"celsius": 100.0}), [212.0, 373.15], rtol=1e-6)
    np.testing.assert_allclose(_predict(model, {"celsius": -40.0}), [-40.0, 233.15], rtol=1e-6)
    # The form starts from the author's first example.
    assert model_example(model.manifest, model.folder) == {"celsius": 100.0}


def test_classifier_from_python_file_with_every_tabular_field_kind(tmp_path: Path) -> None:
    """float, int, bool and enum inputs, standardised: the export sees what the engine builds."""
    source = _write(
        tmp_path / "src",
        "mixed.py",
        """
        import torch
        from torch import nn

        MANIFEST = {
            "name": "mixed",
            "version": "2",
            "task": "tabular-classification",
            "inputs": [
                {"name": "a", "type": "float"},
                {"name": "n", "type": "int"},
                {"name": "flag", "type": "bool"},
                {"name": "colour", "type": "enum", "choices": ["red", "green", "blue"]},
            ],
            "labels": ["low", "high"],
            "preprocessing": {"mean": [1, 1, 1, 1], "std": [2, 2, 2, 2]},
        }
        EXAMPLES = [
            {"a": 1.0, "n": 2, "flag": True, "colour": "blue"},
            {"a": -5.0, "n": 0, "flag": False, "colour": "red"},
        ]

        def build():
            linear = nn.Linear(4, 2)
            with torch.no_grad():
                linear.weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]))
                linear.bias.zero_()
            return linear
        """,
    )
    models = tmp_path / "models"
    result = add_model(source, models)
    _agrees(result)
    assert result.version == "2" and result.examples == 2
    model = _loaded(models, "mixed")
    # ([1, 2, 1, 2] - 1) / 2 sums to 1: high; ([-5, 0, 0, 0] - 1) / 2 sums to -4.5: low.
    assert _label(model, {"a": 1.0, "n": 2, "flag": True, "colour": "blue"}) == "high"
    assert _label(model, {"a": -5.0, "n": 0, "flag": False, "colour": "red"}) == "low"


def test_image_classifier_from_python_file(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "src",
        "brightness.py",
        """
        import torch
        from torch import nn

        MANIFEST = {
            "name": "brightness",
            "version": "1",
            "task": "image-classification",
            "inputs": [
                {"name": "image", "type": "image", "shape": [2, 2], "minimum": 0, "maximum": 16}
            ],
            "labels": ["dark", "light"],
            "preprocessing": {"image": {"size": [2, 2]}},
        }
        EXAMPLES = [{"image": [[0, 0], [0, 0]]}, {"image": [16, 16, 16, 16]}]

        def build():
            linear = nn.Linear(4, 2)
            with torch.no_grad():
                linear.weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]))
                linear.bias.copy_(torch.tensor([32.0, -32.0]))
            return linear
        """,
    )
    models = tmp_path / "models"
    _agrees(add_model(source, models))
    model = _loaded(models, "brightness")
    assert _label(model, {"image": [[1, 2], [3, 4]]}) == "dark"
    assert _label(model, {"image": [[12, 16], [14, 15]]}) == "light"


def test_text_classifier_from_python_file_takes_its_tokenizer(tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = add_model(EXAMPLES_DIR / "reviews" / "reviews.py", models, name="my-reviews")
    _agrees(result)
    assert result.name == "my-reviews"
    copied = result.folder / "tokenizer.json"
    assert copied.read_bytes() == (EXAMPLES_DIR / "reviews" / "tokenizer.json").read_bytes()
    model = _loaded(models, "my-reviews")
    assert _label(model, {"text": "Great phone, I love it."}) == "positive"
    assert _label(model, {"text": "Terrible. The worst, most boring film."}) == "negative"


def test_the_one_megabyte_example_adds(tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = add_model(EXAMPLES_DIR / "mlp_1mb.py", models)
    _agrees(result)
    size = (result.folder / "model.pt2").stat().st_size
    assert 1_000_000 < size < 1_300_000, size
    model = _loaded(models, "mlp-1mb")
    assert model.manifest.feature_count == 16 and len(model.labels) == 4


def test_a_python_file_imports_its_siblings_and_leaves_no_trace(tmp_path: Path) -> None:
    """Two files with a sibling module of one name each get their own; the import leaves
    sys.path and sys.modules as they were."""
    for name, weight in (("one", 2.0), ("two", 3.0)):
        folder = tmp_path / name
        _write(folder, "weights.py", f"WEIGHT = {weight}\n")
        _write(
            folder,
            "model.py",
            f"""
            import torch
            from torch import nn
            from weights import WEIGHT

            MANIFEST = {{
                "name": "{name}",
                "version": "1",
                "task": "tabular-regression",
                "inputs": [{{"name": "x", "type": "float"}}],
                "outputs": [{{"name": "y"}}],
            }}
            EXAMPLES = [{{"x": 1.0}}, {{"x": 2.0}}]

            class Scale(nn.Module):
                def forward(self, x):
                    return x * WEIGHT

            def build():
                return Scale()
            """,
        )
    path_before = list(sys.path)
    models = tmp_path / "models"
    add_model(tmp_path / "one" / "model.py", models)
    add_model(tmp_path / "two" / "model.py", models)
    assert sys.path == path_before
    assert "weights" not in sys.modules
    assert not any(m.startswith("_inferdeck_model_") for m in sys.modules)
    assert not (tmp_path / "one" / "__pycache__").exists()  # no bytecode in the user's folder
    assert _predict(_loaded(models, "one"), {"x": 5.0})[0] == pytest.approx(10.0)
    assert _predict(_loaded(models, "two"), {"x": 5.0})[0] == pytest.approx(15.0)


# From a folder, each task --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name", "row", "expected"),
    [
        (regression_folder, "temperature", {"celsius": 100.0}, [212.0, 373.15]),
        (classifier_folder, "sign", {"a": 2.0, "b": -1.0}, "positive"),
        (text_folder, "review", {"text": "awful and poor but fine"}, "bad"),
    ],
)
def test_folder_source_is_checked_and_copied(
    tmp_path: Path, make: Any, name: str, row: dict[str, Any], expected: Any
) -> None:
    source = make(tmp_path / "src" / name)
    models = tmp_path / "models"
    result = add_model(source, models)
    assert result.max_abs_diff is None  # no module to compare with: the folder is checked
    assert result.folder == models / name
    _only_the_model_in(models, name)
    assert sorted(p.name for p in result.folder.iterdir()) == sorted(
        p.name for p in source.iterdir()
    )
    model = _loaded(models, name)
    if isinstance(expected, str):
        assert _label(model, row) == expected
    else:
        np.testing.assert_allclose(_predict(model, row), expected, rtol=1e-6)


def test_builtin_digits_folder_added_under_another_name(tmp_path: Path) -> None:
    models = tmp_path / "models"
    result = add_model(builtin_models_dir() / "digits", models, name="digits2", version="7")
    assert result.task == "image-classification"
    assert result.examples == 8  # its first held-out rows ran
    assert (result.folder / "heldout.jsonl").is_file()
    written = json.loads((result.folder / "model.json").read_text(encoding="utf-8"))
    assert (written["name"], written["version"]) == ("digits2", "7")
    model = _loaded(models, "digits2")
    first = json.loads((result.folder / "heldout.jsonl").read_text().splitlines()[0])
    assert _label(model, {"image": first["image"]}) == first["label"]


def test_a_broken_folder_source_is_refused(tmp_path: Path) -> None:
    source = regression_folder(tmp_path / "src" / "temperature")
    (source / "model.pt2").unlink()
    models = tmp_path / "models"
    with pytest.raises(PackagingError, match=r"missing model\.pt2"):
        add_model(source, models)
    assert list(models.iterdir()) == []


# What is refused -----------------------------------------------------------------------------

GOOD = """
import torch
from torch import nn

MANIFEST = {
    "name": "temp",
    "version": "1",
    "task": "tabular-regression",
    "inputs": [{"name": "celsius", "type": "float"}],
    "outputs": [{"name": "fahrenheit"}, {"name": "kelvin"}],
}
EXAMPLES = [{"celsius": 100.0}, {"celsius": 0.0}]

class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 2)

    def forward(self, x):
        return self.linear(x)

def build():
    return Model()
"""


def _variant(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


RAISES = _variant("    return Model()", "    raise RuntimeError('no weights here')")
BRANCHES = _variant(
    "        return self.linear(x)",
    "        if x.sum() > 0:\n            return self.linear(x)\n        return -self.linear(x)",
)


BAD_SOURCES = {
    "missing-names": (
        _variant("EXAMPLES = [", "NOT_EXAMPLES = [").replace("def build()", "def make()"),
        ["bad.py does not define build, EXAMPLES"],
    ),
    "import-raises": (
        "import torch\nraise ValueError('oops')\n",
        ["bad.py: importing it raised ValueError: oops (line 2)"],
    ),
    "syntax-error": ("def build(:\n", ["bad.py: importing it raised SyntaxError"]),
    "build-raises": (
        RAISES,
        [
            "bad.py: build() raised RuntimeError: no weights here "
            f"(line {_line_of(RAISES, 'raise')})"
        ],
    ),
    "build-returns-a-function": (
        _variant("    return Model()", "    return lambda x: x"),
        ["bad.py: build() returned a function, not a torch.nn.Module"],
    ),
    "manifest-task": (
        _variant('"tabular-regression"', '"regression"'),
        ["bad.py: MANIFEST task: Input should be"],
    ),
    "manifest-input-type": (
        _variant('"type": "float"', '"type": "number"'),
        ["bad.py: MANIFEST inputs.0.type: Input should be"],
    ),
    "manifest-artifact": (
        _variant('"version": "1",', '"version": "1", "artifact": "x.pt2",'),
        ["MANIFEST artifact"],
    ),
    "example-field": (
        _variant('{"celsius": 0.0}', '{"celsius": "hot"}, {"celsius": 1, "colour": "red"}'),
        [
            "EXAMPLES[1] celsius: Input should be a valid number",
            "EXAMPLES[2] colour: Extra inputs are not permitted",
        ],
    ),
    "examples-empty": (
        _variant('EXAMPLES = [{"celsius": 100.0}, {"celsius": 0.0}]', "EXAMPLES = []"),
        ["EXAMPLES is empty"],
    ),
    "data-dependent": (
        BRANCHES,
        [
            "bad.py: torch.export cannot export the module",
            f"bad.py line {_line_of(BRANCHES, 'if x.sum()')}: if x.sum() > 0:",
        ],
    ),
    "output-width": (
        _variant("nn.Linear(1, 2)", "nn.Linear(1, 3)"),
        ["the module returns shape [2, 3] for 2 examples and 2 outputs"],
    ),
    "non-finite": (
        _variant("return self.linear(x)", "return self.linear(x) / x"),
        ["the module returns non-finite values on EXAMPLES[1]"],
    ),
    "builtin-name": (_variant('"temp"', '"iris"'), ["'iris' is a built-in model's name"]),
}


@pytest.mark.parametrize("case", sorted(BAD_SOURCES))
def test_a_bad_python_file_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    source_text, expected = BAD_SOURCES[case]
    source = _write(tmp_path / "src", "bad.py", source_text)
    models = tmp_path / "models"
    with pytest.raises(PackagingError) as info:
        add_model(source, models)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    for part in expected:
        assert part in message, message
    assert not models.exists() or list(models.iterdir()) == []


def test_an_existing_model_is_not_replaced(tmp_path: Path) -> None:
    source = _write(tmp_path / "src", "temp.py", GOOD)
    models = tmp_path / "models"
    first = add_model(source, models)
    before = (first.folder / "model.pt2").read_bytes()
    with pytest.raises(PackagingError, match=r"already in .*inferdeck models remove temp"):
        add_model(source, models)
    with pytest.raises(PackagingError, match="'iris' is a built-in model's name"):
        add_model(source, models, name="iris")
    # The same name in a folder's manifest under another folder name is the same model.
    shutil.move(first.folder, models / "renamed")
    with pytest.raises(PackagingError, match="already in"):
        add_model(source, models)
    assert (models / "renamed" / "model.pt2").read_bytes() == before
    assert sorted(p.name for p in models.iterdir()) == ["renamed"]


@pytest.mark.parametrize("name", ["..", ".hidden"])
def test_a_name_that_is_no_folder_name_is_refused(tmp_path: Path, name: str) -> None:
    source = _write(tmp_path / "src", "temp.py", GOOD)
    models = tmp_path / "models"
    with pytest.raises(PackagingError, match=r"not starting with '\.'"):
        add_model(source, models, name=name)
    assert not models.exists() or list(models.iterdir()) == []


def test_a_text_model_without_its_tokenizer_is_refused(tmp_path: Path) -> None:
    lone = tmp_path / "src" / "reviews.py"
    lone.parent.mkdir()
    shutil.copy(EXAMPLES_DIR / "reviews" / "reviews.py", lone)
    with pytest.raises(PackagingError, match=r"tokenizer\.json: missing \(it goes beside"):
        add_model(lone, tmp_path / "models")


def test_a_source_that_is_neither_folder_nor_python_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\0")
    with pytest.raises(PackagingError, match="not a model folder or a Python file"):
        add_model(other, tmp_path / "models")
