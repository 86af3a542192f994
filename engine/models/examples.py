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

The files come with the folder, so reading them is bounded whatever they hold: each is opened by
`open_member` (a regular file inside the folder: not a FIFO, which would block, nor a link to
`/dev/zero`), a line is read up to `MAX_LINE_BYTES` (a 2 GB file with no newline was one line,
read whole), and at most `MAX_LINES_READ` lines are read (blank ones count: fifty million
newlines took 4.5 s to skip). A file that breaks a bound is a problem of the file's, named like
a bad line.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from engine.models.manifest import FieldSpec, Manifest, UnsafeFile, open_member, size_text

EXAMPLES_FILE = "examples.jsonl"
HELDOUT_FILES = ("heldout.csv", "heldout.jsonl")
# What a check runs: every stored example up to this many (an author's list is short), and the
# first few held-out rows (a held-out set is a test set, not examples; a few show the model runs).
MAX_EXAMPLES = 64
HELDOUT_EXAMPLES = 8
# The longest line read: an example of the largest image the manifest allows (2048x2048 pixels,
# as JSON numbers) fits; a longer line is refused, not read.
MAX_LINE_BYTES = 32 << 20
# Lines read from a file, blank ones included, before giving up on finding more examples.
MAX_LINES_READ = 10_000


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
    if os.path.lexists(folder / EXAMPLES_FILE):  # a FIFO or a bad link too: named, not skipped
        return list(itertools.islice(_jsonl(folder, EXAMPLES_FILE), limit))
    names = {spec.name for spec in manifest.inputs}
    for name in HELDOUT_FILES:
        if not os.path.lexists(folder / name):
            continue
        rows = _csv(folder, name) if name.endswith(".csv") else _jsonl(folder, name)
        examples = []
        for example in itertools.islice(rows, min(limit, HELDOUT_EXAMPLES)):
            if example.values is not None:
                values = {k: v for k, v in example.values.items() if k in names}
                example = StoredExample(example.where, values)
            examples.append(example)
        return examples
    return []


class _LineTooLong(Exception):
    """A line longer than `MAX_LINE_BYTES`: the file is not read further."""

    def __init__(self, number: int) -> None:
        super().__init__(f"line {number} is longer than {size_text(MAX_LINE_BYTES)}")


def _lines(fh: IO[bytes]) -> Iterator[bytes]:
    """The file's lines, each at most `MAX_LINE_BYTES`, at most `MAX_LINES_READ` of them."""
    for number in range(1, MAX_LINES_READ + 1):
        line = fh.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise _LineTooLong(number)
        yield line


def _jsonl(folder: Path, name: str) -> Iterator[StoredExample]:
    try:
        with open_member(folder, name, None) as fh:
            for number, line in enumerate(_lines(fh), start=1):
                if not line.strip():
                    continue
                where = f"{name} line {number}"
                try:
                    value = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    yield StoredExample(where, None, f"not JSON ({exc})")
                    continue
                if isinstance(value, dict):
                    yield StoredExample(where, value)
                else:
                    yield StoredExample(where, None, "not a JSON object")
    except (_LineTooLong, UnsafeFile) as exc:
        yield StoredExample(name, None, str(exc))
    except OSError as exc:
        yield StoredExample(name, None, f"cannot read ({exc.strerror})")


def _csv(folder: Path, name: str) -> Iterator[StoredExample]:
    try:
        with open_member(folder, name, None) as fh:
            text = (line.decode("utf-8") for line in _lines(fh))
            # Line numbers count the header as line 1 (no quoted newlines in held-out files).
            for number, row in enumerate(csv.DictReader(text), start=2):
                yield StoredExample(f"{name} line {number}", dict(row))
    except (_LineTooLong, UnsafeFile) as exc:
        yield StoredExample(name, None, str(exc))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        yield StoredExample(name, None, f"cannot read ({exc})")


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
