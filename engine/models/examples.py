"""A model's own example input: what its form starts from.

A model folder ships its held-out rows (`heldout.csv` for tabular models, `heldout.jsonl` for
image models, written by `assets/train_models.py`); the first one is a real input the model was
measured on, so it is the example. A field the row lacks takes the manifest's default, else the
middle of its range. Only the first line of the file is read: this runs when a form is built.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson

from engine.models.manifest import FieldSpec, Manifest

HELDOUT_FILES = ("heldout.csv", "heldout.jsonl")


def model_example(manifest: Manifest, folder: Path) -> dict[str, Any]:
    """Values for the manifest's fields: the first held-out row, else defaults and ranges."""
    row = _first_heldout_row(folder)
    example: dict[str, Any] = {}
    for spec in manifest.inputs:
        value = _from_row(spec, row.get(spec.name)) if spec.name in row else None
        if value is None:
            value = _fallback(spec)
        if value is not None:
            example[spec.name] = value
    return example


def _first_heldout_row(folder: Path) -> dict[str, Any]:
    for name in HELDOUT_FILES:
        path = folder / name
        try:
            with path.open("r", encoding="utf-8", newline="") as fh:
                head = fh.readline()
                first = fh.readline() if name.endswith(".csv") else head
        except OSError:
            continue
        try:
            if name.endswith(".csv"):
                rows = list(csv.DictReader(io.StringIO(head + first)))
                return dict(rows[0]) if rows else {}
            value = orjson.loads(first)
            return value if isinstance(value, dict) else {}
        except (orjson.JSONDecodeError, csv.Error):
            return {}  # a damaged file: the defaults and ranges still make an example
    return {}


def _from_row(spec: FieldSpec, raw: Any) -> Any:
    """A held-out value as the form shows it (CSV cells are text; numbers are parsed back)."""
    if spec.type == "image":
        return raw if isinstance(raw, list) else None
    if spec.type in ("float", "int") and isinstance(raw, str):
        try:
            number = float(raw)
        except ValueError:
            return None
        return int(number) if spec.type == "int" else number
    return raw


def _fallback(spec: FieldSpec) -> Any:
    if spec.default is not None:
        return spec.default
    if spec.type == "enum" and spec.choices:
        return spec.choices[0]
    if spec.type == "bool":
        return False
    if spec.type in ("float", "int") and spec.minimum is not None and spec.maximum is not None:
        middle = (spec.minimum + spec.maximum) / 2
        return int(middle) if spec.type == "int" else middle
    return None
