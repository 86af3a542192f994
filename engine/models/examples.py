"""A model's own example inputs: what its form starts from, and what `models check` runs.

A model folder may ship two kinds of real inputs:
- `examples.jsonl`, one input object a line, written by `inferdeck models add` from the
  EXAMPLES its author chose;
- held-out rows (`heldout.csv` for tabular models, `heldout.jsonl` for image models, written by
  `assets/train_models.py` for the built-ins), which carry a `label` beside the inputs.

`model_example` (the form's starting values) takes the first of `examples.jsonl`, else the first
held-out row: an author's chosen example says more than whichever row the split put first, and a
built-in has no `examples.jsonl`, so it keeps its held-out row. A field the row lacks takes the
manifest's default, else the middle of its range. Only the first line is read: this runs when a
form is built. `stored_examples` reads several, for checking a folder.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.models.manifest import FieldSpec, Manifest

EXAMPLES_FILE = "examples.jsonl"
HELDOUT_FILES = ("heldout.csv", "heldout.jsonl")
# What a check runs: every stored example up to this many (an author's list is short), and the
# first few held-out rows (a held-out set is a test set, not examples; a few show the model runs).
MAX_EXAMPLES = 64
HELDOUT_EXAMPLES = 8


@dataclass(frozen=True, slots=True)
class StoredExample:
    """One stored input: where it is (`examples.jsonl line 2`), and its values or why it has
    none (a line that is not a JSON object)."""

    where: str
    values: dict[str, Any] | None
    error: str | None = None


def model_example(manifest: Manifest, folder: Path) -> dict[str, Any]:
    """Values for the manifest's fields: the first stored example or held-out row, else
    defaults and ranges."""
    first = next(iter(stored_examples(manifest, folder, limit=1)), None)
    row = first.values if first is not None and first.values is not None else {}
    example: dict[str, Any] = {}
    for spec in manifest.inputs:
        value = _from_row(spec, row.get(spec.name)) if spec.name in row else None
        if value is None:
            value = _fallback(spec)
        if value is not None:
            example[spec.name] = value
    return example


def stored_examples(
    manifest: Manifest, folder: Path, limit: int = MAX_EXAMPLES
) -> list[StoredExample]:
    """The folder's examples: `examples.jsonl` when it has one (as written: a bad field is the
    file's problem), else the first held-out rows (their inputs only: the label and any other
    column are not inputs). Empty when there are neither."""
    path = folder / EXAMPLES_FILE
    if path.is_file():
        return list(itertools.islice(_jsonl(path), limit))
    names = {spec.name for spec in manifest.inputs}
    for name in HELDOUT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        rows = _csv(path) if name.endswith(".csv") else _jsonl(path)
        examples = []
        for example in itertools.islice(rows, min(limit, HELDOUT_EXAMPLES)):
            if example.values is not None:
                values = {k: v for k, v in example.values.items() if k in names}
                example = StoredExample(example.where, values)
            examples.append(example)
        return examples
    return []


def _jsonl(path: Path) -> Iterator[StoredExample]:
    try:
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path.name} line {number}"
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield StoredExample(where, None, f"not JSON ({exc})")
                    continue
                if isinstance(value, dict):
                    yield StoredExample(where, value)
                else:
                    yield StoredExample(where, None, "not a JSON object")
    except OSError as exc:
        yield StoredExample(path.name, None, f"cannot read ({exc.strerror})")


def _csv(path: Path) -> Iterator[StoredExample]:
    try:
        with path.open("r", encoding="utf-8", newline="") as fh:
            # Line numbers count the header as line 1 (no quoted newlines in held-out files).
            for number, row in enumerate(csv.DictReader(fh), start=2):
                yield StoredExample(f"{path.name} line {number}", dict(row))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        yield StoredExample(path.name, None, f"cannot read ({exc})")


def _from_row(spec: FieldSpec, raw: Any) -> Any:
    """A stored value as the form shows it (CSV cells are text; numbers are parsed back)."""
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
