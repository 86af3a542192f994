"""`inferdeck models add`: a model folder made from a user's Python file, or copied from one.

A Python source defines three names (see `assets/examples/`):
- `build()`, returning the `torch.nn.Module` to export (its `forward` takes the one tensor the
  engine passes, see `engine/models/runtime.py`);
- `MANIFEST`, a dict of the manifest's fields but the artifact (name, version, task,
  description, inputs, labels or outputs, preprocessing);
- `EXAMPLES`, a list of input dicts: they are checked against the inputs, stored as the folder's
  `examples.jsonl` (the form's first values, what `models check` runs), and used to check the
  export.

The file is the user's own code: it runs here once, never when a model serves. Adding it
validates MANIFEST and EXAMPLES (each error named by field), builds the module, exports it with
a dynamic batch dimension, and compares the exported program with the module itself on every
example, fed the engine's own features. A folder source is checked as it is and copied. Either
way the new folder is written under a hidden name inside the models folder, checked as the
engine will load it (`check.check_folder`), then renamed into place: a model appears whole or not
at all. Every failure is a `PackagingError` with a one-line message.

A folder source may come from anyone, so nothing in it runs and what is copied is bounded: it is
checked without torch first (`open_folder`, which vets the archive) and refused before anything
is copied when that finds a problem; only the files the manifest names and the examples are
copied, each a plain name (the manifest allows no path), each a regular file inside the source
folder (a link out of it, a FIFO or a device is refused) of at most its limit, each written as a
new file in the staging folder. Two adds of one name race only to the final rename, which one
of them wins; the other is told the name is taken.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from engine.models.check import (
    MAX_ARTIFACT_BYTES,
    ArchiveRefused,
    artifact_problem,
    check_folder,
    listing,
    load_program,
    one_line,
    open_folder,
    quiet_torch_logs,
    validation_lines,
)
from engine.models.examples import EXAMPLES_FILE, HELDOUT_FILES, stored_examples
from engine.models.manifest import (
    MAX_MANIFEST_BYTES,
    NAME_PATTERN,
    Manifest,
    ManifestError,
    UnsafeFile,
    open_member,
    read_member,
    size_text,
)
from engine.models.registry import builtin_models_dir, model_folders
from engine.models.runtime import FeatureRow, LoadedModel
from engine.models.text import MAX_TOKENIZER_BYTES

if TYPE_CHECKING:
    import torch

# The batch sizes an added model takes: the engine's micro-batches and file jobs stay far below.
MAX_BATCH = 65536
# Exported and eager outputs may differ by float rounding (a fused op, another summation
# order); more than this, relative to the outputs' size (absolute below 1), is a wrong export.
TOLERANCE = 1e-4
CONTRACT = "a model file defines build(), MANIFEST and EXAMPLES"
# The most a folder source's examples.jsonl or held-out file may hold: only their first lines are
# ever read (examples.MAX_EXAMPLES, HELDOUT_EXAMPLES), but the file is copied whole.
MAX_DATA_FILE_BYTES = 256 << 20
# Copied a chunk at a time, counted against the file's limit as it goes.
COPY_CHUNK = 1 << 20


class PackagingError(Exception):
    """Why a model could not be added, in one line."""


@dataclass(frozen=True, slots=True)
class AddResult:
    """An added model: the `--json` summary of `models add`."""

    name: str
    version: str
    task: str
    folder: Path
    examples: int
    max_abs_diff: float | None  # None for a folder source: there is no module to compare with
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "folder": str(self.folder),
            "examples": self.examples,
            "max_abs_diff": self.max_abs_diff,
            "seconds": round(self.seconds, 3),
        }


def add_model(
    source: Path,
    models_dir: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> AddResult:
    """Add `source` (a model folder or a Python file) to `models_dir` as a folder named after
    the model; `name` and `version` replace the manifest's. `progress` hears each step."""
    started = time.perf_counter()
    if source.is_dir():
        staged = _stage_folder(source, models_dir, name, version)
        diff = None
    elif source.is_file() and source.suffix == ".py":
        staged, diff = _stage_python(source, models_dir, name, version, progress)
    else:
        raise PackagingError(f"{source}: not a model folder or a Python file")
    folder = models_dir / staged.manifest.name
    try:
        progress(f"checking {staged.examples} examples")
        check = check_folder(staged.folder)
        if not check.ok:
            lines = listing(check.problems, limit=3)
            raise PackagingError(f"{source}: {'; '.join(lines)}")
        _refuse_taken(staged.manifest.name, models_dir)
        try:
            os.rename(staged.folder, folder)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another add of this name won
                raise PackagingError(_taken(staged.manifest.name, models_dir)) from exc
            raise PackagingError(f"cannot move the model into {folder} ({exc.strerror})") from exc
    except BaseException:
        shutil.rmtree(staged.folder, ignore_errors=True)
        raise
    progress(f"added {staged.manifest.name} to {models_dir}")
    manifest = staged.manifest
    return AddResult(
        manifest.name,
        manifest.version,
        manifest.task,
        folder,
        check.examples,
        diff,
        time.perf_counter() - started,
    )


@dataclass(frozen=True, slots=True)
class _Staged:
    """A model folder written under a hidden name in the models folder, not yet checked."""

    folder: Path
    manifest: Manifest
    examples: int


def builtin_names() -> set[str]:
    """The built-in models' names (from their manifests; no torch)."""
    names = set()
    for folder in model_folders(builtin_models_dir()):
        check = open_folder(folder)
        if check.manifest is not None:
            names.add(check.manifest.name)
    return names


def find_user_model(name: str, models_dir: Path) -> Path | None:
    """The folder in `models_dir` that holds model `name`: the folder of that name, else one
    whose manifest gives that name."""
    folder = models_dir / name
    if _safe_name(name) and (folder / "model.json").is_file():
        return folder
    for folder in model_folders(models_dir):
        check = open_folder(folder)
        if check.manifest is not None and check.manifest.name == name:
            return folder
    return None


def _safe_name(name: str) -> bool:
    """Whether `name` can be a model folder's name: one path component, not a hidden one (the
    manifest's own rule; a name from the command line is checked before it is a path)."""
    return NAME_PATTERN.fullmatch(name) is not None


def _taken(name: str, models_dir: Path) -> str:
    return (
        f"a model named {name!r} is already in {models_dir}; "
        f"remove it first (inferdeck models remove {name})"
    )


def _refuse_taken(name: str, models_dir: Path) -> None:
    if not _safe_name(name):
        raise PackagingError(
            f"model name {name!r}: letters, digits, '_', '-' and '.', not starting with '.'"
        )
    if name in builtin_names():
        raise PackagingError(f"{name!r} is a built-in model's name; choose another with --name")
    if os.path.lexists(models_dir / name) or find_user_model(name, models_dir) is not None:
        raise PackagingError(_taken(name, models_dir))


def _ensure_folder(models_dir: Path) -> None:
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackagingError(f"cannot write to {models_dir} ({exc.strerror})") from exc


@contextlib.contextmanager
def _staging(models_dir: Path, name: str) -> Iterator[Path]:
    """A hidden folder inside `models_dir` for the new model (same file system: the final
    rename is atomic), removed again if writing it fails."""
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".adding-{name}-", dir=models_dir))
    except OSError as exc:
        raise PackagingError(f"cannot write to {models_dir} ({exc.strerror})") from exc
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


# A folder source ---------------------------------------------------------------------------


def _stage_folder(source: Path, models_dir: Path, name: str | None, version: str | None) -> _Staged:
    _ensure_folder(models_dir)
    opened = open_folder(source)
    if opened.manifest is not None and opened.artifact_ok:  # no zip at all: refused here too
        problem = artifact_problem(source, opened.manifest.artifact, not_zip_too=True)
        opened.problems.extend([problem] if problem is not None else [])
    if opened.manifest is None or opened.problems:  # refused before anything is copied
        raise PackagingError(f"{source}: {'; '.join(listing(opened.problems, limit=3))}")
    raw = _raw_manifest(source)
    if name is not None:
        raw["name"] = name
    if version is not None:
        raw["version"] = version
    manifest = _validated_manifest(raw, "--name/--version")
    _refuse_taken(manifest.name, models_dir)
    old = opened.manifest
    # What is copied, and the most each may hold. The manifest is written anew, not copied.
    limits = dict.fromkeys((EXAMPLES_FILE, *HELDOUT_FILES), MAX_DATA_FILE_BYTES)
    if old.preprocessing.text is not None:
        limits[old.preprocessing.text.tokenizer] = MAX_TOKENIZER_BYTES
    limits[old.artifact] = MAX_ARTIFACT_BYTES
    limits.pop("model.json", None)
    with _staging(models_dir, manifest.name) as folder:
        (folder / "model.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        for file, limit in limits.items():
            if os.path.lexists(source / file):  # a broken link or a FIFO too: refused, named
                _copy(source, file, folder, limit)
    examples = len(stored_examples(manifest, folder))
    return _Staged(folder, manifest, examples)


def _raw_manifest(source: Path) -> dict[str, Any]:
    """The folder's model.json as a dict, to write again with --name/--version applied (it is
    validated again then, and the written folder checked whole: a file changed since
    `open_folder` read it changes nothing that is not checked)."""
    try:
        raw = orjson.loads(read_member(source, "model.json", MAX_MANIFEST_BYTES))
    except (OSError, UnsafeFile, orjson.JSONDecodeError) as exc:
        raise PackagingError(f"{source}: model.json: cannot be read again ({exc})") from exc
    if not isinstance(raw, dict):
        raise PackagingError(f"{source}: model.json: not a JSON object")
    return raw


def _copy(source: Path, name: str, folder: Path, limit: int) -> None:
    """`source / name` copied to `folder / name` (the staging folder), under `open_member`'s
    rules, at most `limit` bytes even when the file grows while it is copied, into a file that
    did not exist (never through a link or over another file)."""
    path = source / name
    try:
        with open_member(source, name, limit) as src, (folder / name).open("xb") as dst:
            copied = 0
            while chunk := src.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > limit:
                    raise UnsafeFile(f"larger than {size_text(limit)}")
                dst.write(chunk)
    except UnsafeFile as exc:
        raise PackagingError(f"{source}: {name}: {exc}") from exc
    except OSError as exc:
        raise PackagingError(f"cannot copy {path} ({exc.strerror})") from exc


# A Python source ---------------------------------------------------------------------------


def _stage_python(
    source: Path,
    models_dir: Path,
    name: str | None,
    version: str | None,
    progress: Callable[[str], None],
) -> tuple[_Staged, float]:
    progress(f"importing {source.name}")
    module = _import_user_file(source)
    build, raw_manifest, raw_examples = _contract(module, source)
    if "artifact" in raw_manifest:
        raise PackagingError(
            f"{source.name}: MANIFEST artifact: models add writes model.pt2; leave it out"
        )
    raw = {**raw_manifest}
    if name is not None:
        raw["name"] = name
    if version is not None:
        raw["version"] = version
    manifest = _validated_manifest(raw, f"{source.name}: MANIFEST")
    _refuse_taken(manifest.name, models_dir)
    try:
        model = LoadedModel.from_manifest(manifest, source.parent)
    except ManifestError as exc:
        message = str(exc).removeprefix(f"{source.parent}: ")
        raise PackagingError(f"{source.name}: {message} (it goes beside {source.name})") from exc
    inputs = _validated_examples(raw_examples, model, source)
    progress("building the module")
    net = _build(build, source)
    x = _batch(model, [model.features(row) for row in inputs])
    eager = _run_eager(net, x, manifest, source)
    progress("exporting")
    program = _export(net, x, source)
    with _staging(models_dir, manifest.name) as folder:
        _write_python_folder(folder, manifest, raw, program, inputs, source.parent)
        diff = _compare(folder, manifest.artifact, x, eager, source)
    return _Staged(folder, manifest, len(inputs)), diff


def _import_user_file(source: Path) -> ModuleType:
    """The user's file, imported under a name of its own with its folder on `sys.path` (so it
    can import its siblings) for the import only. Its modules leave `sys.modules` afterwards:
    adding another file with a sibling of the same name imports that one, not this one. No
    bytecode is written into the user's folder."""
    module_name = f"_inferdeck_model_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:
        raise PackagingError(f"{source.name}: cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    folder = source.parent.resolve()
    before = set(sys.modules)
    dont_write = sys.dont_write_bytecode
    sys.path.insert(0, str(folder))
    sys.modules[module_name] = module
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise PackagingError(_user_error(source, "importing it", exc)) from exc
    finally:
        sys.dont_write_bytecode = dont_write
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        for added in set(sys.modules) - before:
            path = getattr(sys.modules[added], "__file__", None)
            if added == module_name or (path and Path(path).resolve().is_relative_to(folder)):
                del sys.modules[added]
    return module


def _user_error(source: Path, doing: str, exc: BaseException) -> str:
    """A failure in the user's code as one line: the exception, and the line of their file
    where it happened."""
    line = _user_line(source, exc)
    where = f" (line {line})" if line is not None else ""
    return f"{source.name}: {doing} raised {type(exc).__name__}: {one_line(exc)}{where}"


def _user_line(source: Path, exc: BaseException) -> int | None:
    """The deepest line of the user's file in `exc`'s traceback: where their code called
    what raised."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == source.resolve():
            line = frame.lineno
    return line


def _contract(
    module: ModuleType, source: Path
) -> tuple[Callable[[], Any], dict[str, Any], list[Any]]:
    missing = [n for n in ("build", "MANIFEST", "EXAMPLES") if not hasattr(module, n)]
    if missing:
        raise PackagingError(f"{source.name} does not define {', '.join(missing)} ({CONTRACT})")
    build, manifest, examples = module.build, module.MANIFEST, module.EXAMPLES
    if not callable(build):
        raise PackagingError(f"{source.name}: build is not a function ({CONTRACT})")
    if not isinstance(manifest, dict):
        raise PackagingError(f"{source.name}: MANIFEST is a {type(manifest).__name__}, not a dict")
    if not isinstance(examples, (list, tuple)):
        raise PackagingError(f"{source.name}: EXAMPLES is a {type(examples).__name__}, not a list")
    if not examples:
        raise PackagingError(f"{source.name}: EXAMPLES is empty; give at least one input")
    return build, manifest, list(examples)


def _validated_manifest(raw: dict[str, Any], where: str) -> Manifest:
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        lines = listing(validation_lines(exc), limit=3)
        raise PackagingError(f"{where} {'; '.join(lines)}") from exc


def _validated_examples(raw: list[Any], model: LoadedModel, source: Path) -> list[BaseModel]:
    inputs, problems = [], []
    for index, example in enumerate(raw):
        if not isinstance(example, dict):
            problems.append(f"EXAMPLES[{index}]: a {type(example).__name__}, not a dict")
            continue
        try:
            inputs.append(model.inputs.model_validate(example))
        except ValidationError as exc:
            problems.extend(f"EXAMPLES[{index}] {line}" for line in validation_lines(exc))
    if problems:
        raise PackagingError(f"{source.name}: {'; '.join(listing(problems, limit=3))}")
    return inputs


def _build(build: Callable[[], Any], source: Path) -> torch.nn.Module:
    import torch

    try:
        net = build()
    except (Exception, SystemExit) as exc:
        raise PackagingError(_user_error(source, "build()", exc)) from exc
    if not isinstance(net, torch.nn.Module):
        kind = type(net).__name__
        raise PackagingError(f"{source.name}: build() returned a {kind}, not a torch.nn.Module")
    return net.eval()  # exported for inference: dropout off, batch norm on its running stats


def _batch(model: LoadedModel, rows: list[FeatureRow]) -> torch.Tensor:
    """The tensor the engine passes for these rows (what `LoadedModel.predict_batch` builds:
    int64 ids for a text model, else float32 features, standardised when the manifest says)."""
    import torch

    text = model.manifest.preprocessing.text is not None
    x = np.asarray(rows, dtype=np.int64 if text else np.float32)
    pre = model.manifest.preprocessing
    if pre.mean is not None and pre.std is not None:
        mean: np.ndarray = np.asarray(pre.mean, dtype=np.float32)
        std: np.ndarray = np.asarray(pre.std, dtype=np.float32)
        x = (x - mean) / std
    return torch.from_numpy(x)


def _run_eager(
    net: torch.nn.Module, x: torch.Tensor, manifest: Manifest, source: Path
) -> torch.Tensor:
    import torch

    try:
        with torch.no_grad():
            out = net(x)
    except Exception as exc:
        raise PackagingError(_user_error(source, "the module on EXAMPLES", exc)) from exc
    if not isinstance(out, torch.Tensor):
        raise PackagingError(
            f"{source.name}: the module returns a {type(out).__name__}, not one tensor"
        )
    width = len(manifest.output_names)
    if tuple(out.shape) != (len(x), width):
        what = "labels" if manifest.is_classifier else "outputs"
        raise PackagingError(
            f"{source.name}: the module returns shape {list(out.shape)} for {len(x)} examples "
            f"and {width} {what}; expected [{len(x)}, {width}]"
        )
    bad = [i for i in range(len(out)) if not torch.isfinite(out[i]).all()]
    if bad:
        shown = ", ".join(f"EXAMPLES[{i}]" for i in bad[:5])
        raise PackagingError(f"{source.name}: the module returns non-finite values on {shown}")
    return out


def _export(net: torch.nn.Module, x: torch.Tensor, source: Path) -> Any:
    """The module exported with a dynamic batch dimension. Traced on at least two rows: a
    dimension traced at size 1 is taken for a constant and the export refuses to make it
    dynamic."""
    import torch

    example = x if len(x) >= 2 else torch.cat([x, x])
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        # The shapes as a tuple, by position: no need to know `forward`'s argument's name.
        # Warnings off: torch's deprecation notes are for the user's code's authors, not here.
        # A failed export prints the graph it traced to stderr itself: not for a user either.
        with (
            quiet_torch_logs(),
            warnings.catch_warnings(),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            return torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        raise PackagingError(_export_error(source, exc)) from exc


# Where torch.export's message names the user's line: `File "...", line N, in forward` + code.
_CALL_SITE = re.compile(r'File "([^"]+)", line (\d+), in \w+\n\s*(.+)')


def _export_error(source: Path, exc: Exception) -> str:
    message = f"{source.name}: torch.export cannot export the module: {one_line(exc)}"
    sites = _CALL_SITE.findall(str(exc))
    if sites:
        file, line, code = sites[-1]
        message += f" (at {Path(file).name} line {line}: {code.strip()})"
    elif (line := _user_line(source, exc)) is not None:
        message += f" (line {line})"
    return message


def _write_python_folder(
    folder: Path,
    manifest: Manifest,
    raw: dict[str, Any],
    program: Any,
    inputs: list[BaseModel],
    beside: Path,
) -> None:
    """The new folder's files: the manifest, the program, the examples and, for a text model,
    the tokenizer from `beside` (the Python file's folder; MANIFEST names it, a plain name)."""
    import torch

    # The manifest as written (normalised by the model, so the file reads like a hand-written
    # one): the fields the user gave, with --name/--version applied.
    written = manifest.model_dump(mode="json", include=set(raw), exclude_none=True)
    (folder / "model.json").write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
    torch.export.save(program, str(folder / manifest.artifact))
    lines = b"".join(orjson.dumps(row.model_dump(mode="json")) + b"\n" for row in inputs)
    (folder / EXAMPLES_FILE).write_bytes(lines)
    if manifest.preprocessing.text is not None:
        _copy(beside, manifest.preprocessing.text.tokenizer, folder, MAX_TOKENIZER_BYTES)


def _compare(
    folder: Path, artifact: str, x: torch.Tensor, eager: torch.Tensor, source: Path
) -> float:
    """The largest difference between the saved program (loaded back, as the engine will) and
    the module itself on the examples; a `PackagingError` beyond `TOLERANCE`, or when the
    program is one the engine refuses to load (`check.vet_archive`: an op it does not run)."""
    import torch

    try:
        exported = load_program(folder, artifact).module()
    except (ArchiveRefused, UnsafeFile) as exc:
        raise PackagingError(f"{source.name}: the exported {artifact}: {exc}") from exc
    with torch.no_grad():
        out = exported(x)
    diff = float((out - eager).abs().max())
    scale = max(1.0, float(eager.abs().max()))
    if not diff <= TOLERANCE * scale:  # NaN too
        raise PackagingError(
            f"{source.name}: the exported program and the module disagree on EXAMPLES "
            f"(largest difference {diff:.3g}, more than {TOLERANCE * scale:.3g})"
        )
    return diff
