"""The built-in models and model folders: discovery, the input contract, accuracy on the held-out
sets shipped with them, user model folders (good and broken), and image files for the digits model.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.ingest.images import image_pixels
from engine.models import ModelRegistry, builtin_models_dir
from engine.models.runtime import LoadedModel

IRIS_FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@pytest.fixture(autouse=True)
def _no_env_models_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own models folder must not change what these tests discover.
    monkeypatch.delenv("INFERDECK_MODELS_DIR", raising=False)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    registry = ModelRegistry.discover()
    registry.load_all()
    return registry


def _model(registry: ModelRegistry, name: str) -> LoadedModel:
    model = registry.get(name)
    assert model is not None, f"{name} not found; have {registry.names()}"
    return model


def _accuracy(model: LoadedModel, rows: list[dict[str, Any]], labels: list[str]) -> float:
    features = [model.features(model.inputs.model_validate(row)) for row in rows]
    probs = model.predict_batch(features)
    assert probs.shape == (len(rows), len(model.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    predicted: list[str] = [model.labels[int(i)] for i in probs.argmax(axis=1)]
    correct = sum(p == t for p, t in zip(predicted, labels, strict=True))
    return correct / len(labels)


def _digits_heldout() -> list[dict[str, Any]]:
    path = builtin_models_dir() / "digits" / "heldout.jsonl"
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def test_discover_finds_the_builtin_models(registry: ModelRegistry) -> None:
    assert {"iris", "digits"} <= set(registry.names())
    assert registry.problems == []

    iris = _model(registry, "iris")
    assert iris.manifest.task == "tabular-classification"
    assert [spec.name for spec in iris.manifest.inputs] == list(IRIS_FIELDS)
    for spec in iris.manifest.inputs:
        assert spec.type == "float"
        assert spec.minimum is not None and spec.maximum is not None
        assert spec.minimum < spec.maximum
    assert iris.labels == ["setosa", "versicolor", "virginica"]
    assert registry.default_for("tabular-classification") is iris

    digits = _model(registry, "digits")
    assert digits.manifest.task == "image-classification"
    image = digits.manifest.image_field
    assert image is not None and image.shape == [8, 8]
    assert digits.manifest.feature_count == 64
    assert digits.labels == [str(d) for d in range(10)]
    assert registry.default_for("image-classification") is digits
    assert iris.loaded and digits.loaded


def test_iris_heldout_accuracy(registry: ModelRegistry) -> None:
    iris = _model(registry, "iris")
    path = builtin_models_dir() / "iris" / "heldout.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == [*IRIS_FIELDS, "label"]
        records = list(reader)
    assert len(records) >= 30
    rows = [{name: float(rec[name]) for name in IRIS_FIELDS} for rec in records]
    accuracy = _accuracy(iris, rows, [rec["label"] for rec in records])
    assert accuracy >= 0.93, accuracy


def test_digits_heldout_accuracy(registry: ModelRegistry) -> None:
    digits = _model(registry, "digits")
    records = _digits_heldout()
    assert len(records) >= 100
    assert all(len(rec["image"]) == 64 for rec in records)
    rows = [{"image": rec["image"]} for rec in records]
    accuracy = _accuracy(digits, rows, [rec["label"] for rec in records])
    assert accuracy >= 0.95, accuracy


def test_digits_accepts_rows_of_pixels_as_well_as_a_flat_list(registry: ModelRegistry) -> None:
    digits = _model(registry, "digits")
    flat = _digits_heldout()[0]["image"]
    nested = [flat[r * 8 : (r + 1) * 8] for r in range(8)]
    a = digits.features(digits.inputs.model_validate({"image": flat}))
    b = digits.features(digits.inputs.model_validate({"image": nested}))
    assert list(a) == list(b) == [float(v) for v in flat]


def test_input_json_schema_is_the_contract(registry: ModelRegistry) -> None:
    iris = _model(registry, "iris")
    schema = iris.inputs.model_json_schema()
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(IRIS_FIELDS)
    props = schema["properties"]
    assert set(props) == set(IRIS_FIELDS)
    for spec in iris.manifest.inputs:
        prop = props[spec.name]
        assert prop["type"] == "number"
        assert prop["minimum"] == spec.minimum
        assert prop["maximum"] == spec.maximum

    digits = _model(registry, "digits")
    digits_schema = digits.inputs.model_json_schema()
    assert digits_schema["additionalProperties"] is False
    assert digits_schema["required"] == ["image"]


def test_generated_input_model_rejects_bad_values(registry: ModelRegistry) -> None:
    from pydantic import ValidationError

    iris = _model(registry, "iris")
    good = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    iris.inputs.model_validate(good)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({**good, "sepal_length": "wide"}, "sepal_length", "float_parsing"),
        ({**good, "colour": "blue"}, "colour", "extra_forbidden"),
        ({**good, "petal_width": float("nan")}, "petal_width", "finite_number"),
        ({**good, "petal_width": float("inf")}, "petal_width", "finite_number"),
        ({**good, "petal_width": 99.0}, "petal_width", "less_than_equal"),
        ({**good, "petal_width": -1.0}, "petal_width", "greater_than_equal"),
    ]
    for row, field, kind in cases:
        with pytest.raises(ValidationError) as info:
            iris.inputs.model_validate(row)
        errors = info.value.errors()
        assert [(e["loc"], e["type"]) for e in errors] == [((field,), kind)], row

    digits = _model(registry, "digits")
    with pytest.raises(ValidationError):
        digits.inputs.model_validate({"image": [0] * 63})
    with pytest.raises(ValidationError):
        digits.inputs.model_validate({"image": [0] * 63 + [17]})


def _copy_iris(root: Path, folder: str, name: str) -> Path:
    dest = root / folder
    shutil.copytree(builtin_models_dir() / "iris", dest)
    manifest = json.loads((dest / "model.json").read_text(encoding="utf-8"))
    manifest["name"] = name
    (dest / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    return dest


def test_user_model_folder_loads(tmp_path: Path) -> None:
    models_dir = tmp_path / "mymodels"
    _copy_iris(models_dir, "iris2", "iris2")
    registry = ModelRegistry.discover(models_dir)
    assert registry.problems == []
    assert {"iris", "digits", "iris2"} <= set(registry.names())
    iris2 = _model(registry, "iris2")
    assert iris2.folder == models_dir / "iris2"
    row = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    probs = iris2.predict_batch([iris2.features(iris2.inputs.model_validate(row))])
    assert iris2.labels[int(probs.argmax())] == "setosa"


def test_user_model_with_a_builtin_name_does_not_replace_the_builtin(tmp_path: Path) -> None:
    models_dir = tmp_path / "mymodels"
    _copy_iris(models_dir, "my-iris", "iris")
    registry = ModelRegistry.discover(models_dir)
    assert _model(registry, "iris").folder == builtin_models_dir() / "iris"


def test_broken_user_folders_are_reported_and_do_not_stop_the_others(tmp_path: Path) -> None:
    models_dir = tmp_path / "mymodels"
    _copy_iris(models_dir, "iris2", "iris2")
    bad_json = models_dir / "aaa-bad-json"
    bad_json.mkdir()
    (bad_json / "model.json").write_text("{ not json", encoding="utf-8")
    bad_field = _copy_iris(models_dir, "bad-task", "bad-task")
    manifest = json.loads((bad_field / "model.json").read_text(encoding="utf-8"))
    manifest["task"] = "regression"
    (bad_field / "model.json").write_text(json.dumps(manifest), encoding="utf-8")
    no_artifact = _copy_iris(models_dir, "no-artifact", "no-artifact")
    (no_artifact / "model.pt2").unlink()
    (models_dir / "not-a-model").mkdir()  # no model.json: ignored, not a problem

    registry = ModelRegistry.discover(models_dir)

    assert {"iris", "digits", "iris2"} <= set(registry.names())
    assert "bad-task" not in registry.names() and "no-artifact" not in registry.names()
    assert len(registry.problems) == 3, registry.problems
    problems = "\n".join(registry.problems)
    assert "aaa-bad-json" in problems
    assert "bad-task" in problems and "task" in problems
    assert "no-artifact" in problems and "model.pt2" in problems
    assert "not-a-model" not in problems
    registry.load_all()  # the good ones still load


def _digit_png(path: Path, image: list[int]) -> None:
    """Black ink on a white background, 64x64: each 8x8 pixel becomes an 8x8 block."""
    grey = np.array([255 - round(v * 255 / 16) for v in image], dtype=np.uint8).reshape(8, 8)
    big = Image.fromarray(grey, mode="L").resize((64, 64), Image.Resampling.NEAREST)
    big.convert("RGB").save(path)


def test_png_of_a_drawn_digit_is_classified_as_that_digit(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    digits = _model(registry, "digits")
    pre = digits.manifest.preprocessing.image
    assert pre is not None
    records = _digits_heldout()
    # One example of each digit, among those the model gets right from the raw 8x8 values.
    raw = digits.predict_batch([rec["image"] for rec in records]).argmax(axis=1)
    chosen: dict[str, list[int]] = {}
    for rec, best in zip(records, raw, strict=True):
        if digits.labels[best] == rec["label"]:
            chosen.setdefault(rec["label"], rec["image"])
    assert sorted(chosen) == digits.labels

    rows = []
    for label, image in sorted(chosen.items()):
        path = tmp_path / f"digit-{label}.png"
        _digit_png(path, image)
        with Image.open(path) as img:
            assert img.size == (64, 64)
            assert np.asarray(img.convert("L")).mean() > 127  # light background
        pixels = image_pixels(path, pre)
        assert len(pixels) == 64
        assert all(0.0 <= p <= pre.scale for p in pixels)
        # Inverted back to ink-high and resized (LANCZOS rings a little at block edges): close
        # to the original 8x8 values.
        diff = np.abs(np.asarray(pixels) - np.asarray(image, dtype=np.float64))
        assert diff.mean() < 1.0 and diff.max() <= 4.0, diff
        rows.append(digits.features(digits.inputs.model_validate({"image": pixels})))
    predicted = [digits.labels[i] for i in digits.predict_batch(rows).argmax(axis=1)]
    assert predicted == sorted(chosen)
