"""A manifest is checked against its task, and each task's answer has its own shape.

Regression answers are named numbers; a text model's input is tokenized to fixed-width ids; a
model returning something that is not a finite number fails its batch instead of storing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_folders import classifier_folder, regression_folder, text_folder

from engine.batching import _predict_outputs
from engine.models import ManifestError, ModelRegistry, read_manifest

BASE: dict[str, Any] = {
    "name": "m",
    "version": "1",
    "inputs": [{"name": "a", "type": "float"}],
}


def _problem(tmp_path: Path, **fields: Any) -> str:
    (tmp_path / "model.json").write_text(json.dumps({**BASE, **fields}), encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "tabular-regression"}, "needs at least one output"),
        (
            {"task": "tabular-regression", "outputs": [{"name": "y"}], "labels": ["a", "b"]},
            "has outputs, not labels",
        ),
        ({"task": "tabular-classification", "labels": ["a"]}, "at least two labels"),
        (
            {"task": "tabular-classification", "labels": ["a", "b"], "outputs": [{"name": "y"}]},
            "has labels, not outputs",
        ),
        ({"task": "tabular-classification", "labels": ["a", "a"]}, "label names repeat"),
        ({"task": "text-classification", "labels": ["a", "b"]}, "exactly one text input"),
        (
            {
                "task": "tabular-regression",
                "outputs": [{"name": "y"}],
                "inputs": [{"name": "t", "type": "text"}],
            },
            "takes no text input",
        ),
        (
            {
                "task": "tabular-classification",
                "labels": ["a", "b"],
                "inputs": [{"name": "a", "type": "float", "max_length": 3}],
            },
            "max_length is for text",
        ),
        (
            {
                "task": "tabular-classification",
                "labels": ["a", "b"],
                "preprocessing": {"mean": [0.0, 1.0], "std": [1.0, 1.0]},
            },
            "need 1 values each",
        ),
        (
            {
                "task": "tabular-classification",
                "labels": ["a", "b"],
                "preprocessing": {"mean": [0.0], "std": [0.0]},
            },
            "std has a zero",
        ),
        (
            {
                "task": "tabular-classification",
                "labels": ["a", "b"],
                "preprocessing": {"mean": [0.0]},
            },
            "both mean and std",
        ),
        ({"task": "audio-classification", "labels": ["a", "b"]}, "model.json task"),
    ],
)
def test_a_manifest_that_does_not_fit_its_task_is_refused_by_name(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    problem = _problem(tmp_path, **fields)
    assert message in problem and str(tmp_path) in problem
    assert "Value error," not in problem  # pydantic's prefix is noise to a user


def test_each_task_answers_in_its_own_shape(tmp_path: Path) -> None:
    regression_folder(tmp_path / "t")
    text_folder(tmp_path / "r")
    classifier_folder(tmp_path / "s")
    registry = ModelRegistry.discover(tmp_path)
    registry.load_all()
    assert registry.problems == []

    temperature = registry.models["temperature"]
    assert temperature.output_names == ["fahrenheit", "kelvin"]
    rows = [temperature.features(temperature.inputs(celsius=c)) for c in (100, -40, 37)]
    assert _predict_outputs(temperature, rows) == [
        {"values": {"fahrenheit": 212.0, "kelvin": 373.15}},
        {"values": {"fahrenheit": -40.0, "kelvin": 233.15}},
        {"values": {"fahrenheit": 98.6, "kelvin": 310.15}},
    ]

    review = registry.models["review"]
    row = review.features(review.inputs(text="GOOD, great!"))
    assert row == [2, 1, 3, 1, 0, 0, 0, 0]  # good , great ! then padding
    long = review.features(review.inputs(text=" ".join(["bad"] * 50)))
    assert long == [5] * 8  # cut to max_tokens, not padded past it
    answers = _predict_outputs(review, [row, long])
    assert [a["label"] for a in answers] == ["good", "bad"]
    assert sum(answers[0]["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="at most 200 characters"):
        review.inputs(text="x" * 201)

    sign = registry.models["sign"]
    assert _predict_outputs(sign, [[2.0, -1.0]])[0]["label"] == "positive"


def test_an_output_that_is_not_a_finite_number_fails_the_batch(tmp_path: Path) -> None:
    model = ModelRegistry.discover(regression_folder(tmp_path / "t").parent).models["temperature"]
    model.load()
    rows = [model.features(model.inputs(celsius=c)) for c in (3e38, 1.0)]  # x 1.8: inf
    with pytest.raises(ValueError, match="not a finite number"):
        _predict_outputs(model, rows)
    assert np.isinf(model.predict_batch(rows)[0, 0])
