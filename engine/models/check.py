"""Checking a model folder the way the engine loads it, naming every problem in one line.

One code path serves `inferdeck models check`, `inferdeck models add` (which checks the folder it
wrote before moving it in) and the registry (which skips a broken folder with these same lines,
so `serve`, `predict` and the app say what `check` says). It has two stages:
- `open_folder` reads what needs no torch: the manifest (every field error, not just the first),
  the tokenizer of a text model, whether the artifact is there. Discovery runs only this, so
  listing models and building the app's window never import torch.
- `examine` loads the artifact as the engine does (`LoadedModel.load`: `torch.export.load` and
  its warm-up) and runs the folder's stored examples through `predict_batch` as one batch of at
  least two rows, as a micro-batch would: an example that fails validation, an artifact that
  does not load or refuses the engine's rows, and a non-finite output are each a problem.

A problem names the file it is about (`model.json inputs.0.type: ...`, `model.pt2 takes ...`,
`examples.jsonl line 3: ...`), not the folder: `FolderCheck.lines` puts the folder in front, as
the registry reports it. When the artifact cannot run, its examples are not reported one by one
as failing too: the one cause is the line.
"""

from __future__ import annotations

import contextlib
import logging
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from engine.models.examples import stored_examples
from engine.models.manifest import Manifest, ManifestError
from engine.models.runtime import FeatureRow, LoadedModel

if TYPE_CHECKING:
    from torch.export import ExportedProgram

# Lines of one kind (examples failing validation, non-finite outputs) named before "and N more".
MAX_LISTED = 5
# A library's error can run to pages (torch.export's do); a line keeps this much of its first line.
MAX_MESSAGE = 300


@dataclass
class FolderCheck:
    """What checking one model folder found: its manifest and model when they could be read,
    the problems (none when it is fine) and how many stored examples ran."""

    folder: Path
    manifest: Manifest | None = None
    model: LoadedModel | None = None
    problems: list[str] = field(default_factory=list)
    examples: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def name(self) -> str:
        """The model's name, or the folder's when its manifest cannot be read."""
        return self.manifest.name if self.manifest is not None else self.folder.name

    def lines(self) -> list[str]:
        """The problems as the registry reports them: `{folder}: {problem}`."""
        return [f"{self.folder}: {problem}" for problem in self.problems]


def one_line(exc: BaseException) -> str:
    """An exception's message as one line: its first non-empty line, cut to a readable
    length; the exception's type when it has no message."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if not text:
        return type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def validation_lines(exc: ValidationError) -> list[str]:
    """A pydantic error as `field: message` lines, one per failing field."""
    return [f"{where}: {message}" if where else message for where, message in _errors(exc)]


def _errors(exc: ValidationError) -> Iterator[tuple[str, str]]:
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        yield where, error["msg"].removeprefix("Value error, ")


def listing(items: Sequence[str], limit: int = MAX_LISTED) -> list[str]:
    """`items`, the first `limit` of them and a line saying how many more there are."""
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"... and {len(items) - limit} more"]


@contextlib.contextmanager
def quiet_torch_logs() -> Iterator[None]:
    """Within the block, torch's own loggers are off. A failed `torch.export.load` logs the
    traceback of its first attempt, a failed export the graph it traced, each on a stderr
    handler of torch's own: to a user that reads as a crash, and the exception raised says
    what they need. Process-wide while it lasts: a warning another thread's torch logs in
    that moment is lost too."""
    import torch.export  # noqa: F401  (its loggers, and export's, exist once it is imported)

    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "torch"]
    loggers = [logging.getLogger(name) for name in ["torch", *names]]
    saved = [(logger, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in saved:
            logger.disabled = disabled


def read_manifest_problems(folder: Path) -> tuple[Manifest | None, list[str]]:
    """The folder's manifest, or every reason it cannot be used: one line per failing field,
    in the form `read_manifest` gives its first (`model.json task: Input should be ...`)."""
    path = folder / "model.json"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [f"cannot read model.json ({exc.strerror})"]
    try:
        return Manifest.model_validate_json(data), []
    except ValidationError as exc:
        return None, [
            f"model.json {where}: {message}" if where else f"model.json: {message}"
            for where, message in _errors(exc)
        ]


def open_folder(folder: Path) -> FolderCheck:
    """What can be checked without torch: the manifest, the tokenizer, the artifact's presence.
    `model` is set when the manifest and tokenizer could be read."""
    check = FolderCheck(folder)
    check.manifest, check.problems = read_manifest_problems(folder)
    manifest = check.manifest
    if manifest is None:
        return check
    if not (folder / manifest.artifact).is_file():
        check.problems.append(f"missing {manifest.artifact}")
    try:
        check.model = LoadedModel.from_manifest(manifest, folder)
    except ManifestError as exc:  # the tokenizer: its message starts with the folder
        check.problems.append(str(exc).removeprefix(f"{folder}: "))
    return check


def check_folder(folder: Path) -> FolderCheck:
    """Everything `open_folder` and `examine` find, as `inferdeck models check` reports it."""
    check = open_folder(folder)
    manifest = check.manifest
    if manifest is None or not (folder / manifest.artifact).is_file():
        return check
    if check.model is None:  # no tokenizer to run it with, but the artifact can still be read
        check.problems.extend(archive_problems(manifest, folder))
        return check
    problems, check.examples = examine(check.model)
    check.problems.extend(problems)
    return check


def examine(model: LoadedModel) -> tuple[list[str], int]:
    """Load `model` and run its stored examples as the engine would: the problems found and
    how many examples ran. Runs torch: in the executor, never on the event loop."""
    problems: list[str] = []
    rows: list[FeatureRow] = []
    places: list[str] = []
    bad: list[str] = []
    for example in stored_examples(model.manifest, model.folder):
        if example.values is None:
            bad.append(f"{example.where}: {example.error}")
            continue
        try:
            inputs = model.inputs.model_validate(example.values)
        except ValidationError as exc:
            bad.append(f"{example.where}: {'; '.join(validation_lines(exc))}")
            continue
        rows.append(model.features(inputs))
        places.append(example.where)
    try:
        with quiet_torch_logs():
            model.load()
    except Exception as exc:
        return [*explain_failure(model, exc), *listing(bad)], 0
    # A batch of at least two rows, as a micro-batch is: an artifact exported for a fixed batch
    # of one passes the warm-up and fails here, not on the first busy second of serving.
    width = model.manifest.feature_count
    batch: list[FeatureRow] = list(rows) if rows else [[0] * width]
    if len(batch) < 2:
        batch = batch * 2
    try:
        with quiet_torch_logs():
            out = model.predict_batch(batch)
    except Exception as exc:
        return [*explain_failure(model, exc), *listing(bad)], 0
    problems.extend(listing(bad))
    names = model.output_names
    non_finite = []
    for place, values in zip(places, out[: len(rows)], strict=True):
        if not np.isfinite(values).all():
            shown = ", ".join(
                f"{name} = {value}"
                for name, value in zip(names, values.tolist(), strict=False)
                if not np.isfinite(value)
            )
            non_finite.append(f"{place}: non-finite output ({shown})")
    problems.extend(listing(non_finite))
    return problems, len(rows)


def explain_failure(model: LoadedModel, exc: Exception) -> list[str]:
    """Why `model` could not load or run the engine's rows, in its manifest's terms: the
    archive read again and its input compared with what the engine passes (torch's own
    messages name a guard or a matmul, not the manifest), else the error itself."""
    manifest = model.manifest
    problems = archive_problems(manifest, model.folder)
    if problems:
        return problems
    message = one_line(exc)
    if isinstance(exc, ValueError) and message.startswith("returns shape"):
        # LoadedModel.load's own check of the output's width against labels or outputs.
        names = ", ".join(manifest.output_names)
        return [f"{manifest.artifact} {message} ({names})"]
    return [f"{manifest.artifact}: cannot run the engine's rows: {type(exc).__name__}: {message}"]


def archive_problems(manifest: Manifest, folder: Path) -> list[str]:
    """What is wrong with the artifact as a file: missing, not a `torch.export` archive, or an
    input that is not the one tensor the engine passes (dtype, rows' width, batch)."""
    import torch

    path = folder / manifest.artifact
    if not path.is_file():
        return [f"missing {manifest.artifact}"]
    try:
        with quiet_torch_logs():
            program = torch.export.load(str(path))
    except Exception as exc:
        return [f"{manifest.artifact}: {_not_an_archive(path, exc)}"]
    return signature_problems(program, manifest)


def _not_an_archive(path: Path, exc: Exception) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "not a torch.export archive (not a zip file)"
    if any(name.endswith("data.pkl") for name in names) and not any(
        name.endswith("archive_format") for name in names
    ):
        return (
            "a torch.save file (pickled tensors), not a torch.export archive: "
            "save the module with torch.export.save"
        )
    return f"not a torch.export archive ({one_line(exc)})"


def signature_problems(program: ExportedProgram, manifest: Manifest) -> list[str]:
    """The exported program's input against the engine's: one tensor, `[batch, width]`, int64
    token ids for a text model and float32 features otherwise, any batch size."""
    import torch

    artifact = manifest.artifact
    names = program.graph_signature.user_inputs
    if len(names) != 1:
        return [f"{artifact} takes {len(names)} inputs; the engine passes one tensor"]
    node = next(
        (n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0]), None
    )
    value: Any = node.meta.get("val") if node is not None else None
    if not isinstance(value, torch.Tensor):
        return [f"{artifact} takes a {type(value).__name__}; the engine passes one tensor"]
    text = manifest.task == "text-classification"
    want = torch.int64 if text else torch.float32
    width = manifest.feature_count
    problems = []
    if value.dtype != want:
        what = "token ids" if text else "features"
        problems.append(
            f"{artifact} takes {_dtype(value.dtype)} input; the engine passes {_dtype(want)} {what}"
        )
    shape = [d if isinstance(d, int) else "batch" for d in value.shape]
    if len(shape) != 2:
        shown = ", ".join(map(str, shape))
        problems.append(
            f"{artifact} takes input of shape [{shown}]; the engine passes [batch, {width}]"
        )
        return problems
    batch, columns = shape
    if isinstance(columns, int) and columns != width:
        problems.append(
            f"{artifact} takes rows of {columns} values (dimension 1); {_row_source(manifest)}"
        )
    if isinstance(batch, int):
        problems.append(
            f"{artifact} takes a fixed batch of {batch} (dimension 0); export it with a dynamic "
            f"batch dimension, torch.export.Dim"
        )
    return problems


def _dtype(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _row_source(manifest: Manifest) -> str:
    """Where the engine's row width comes from, in the manifest's terms."""
    width = manifest.feature_count
    if manifest.task == "text-classification":
        return f"the manifest's preprocessing.text.max_tokens is {width}"
    image = manifest.image_field
    if image is not None and image.shape:
        return f"the manifest's {image.shape[0]}x{image.shape[1]} image makes {width}"
    count = len(manifest.inputs)
    inputs = "input makes" if count == 1 else "inputs make"
    return f"the manifest's {count} {inputs} {width}"
