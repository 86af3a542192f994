"""Checking a model folder the way the engine loads it, naming every problem in one line.

One code path serves `inferdeck models check`, `inferdeck models add` (which checks the folder it
wrote before moving it in) and the registry (which skips a broken folder with these same lines,
so `serve`, `predict` and the app say what `check` says). It has two stages:
- `open_folder` reads what needs no torch: the manifest (every field error, not just the first),
  the tokenizer of a text model, whether the artifact is there and holds nothing the engine
  will not load (`vet_archive`). Discovery runs only this, so listing models and building the
  app's window never import torch.
- `examine` loads the artifact as the engine does (`LoadedModel.load`: `torch.export.load` and
  its warm-up) and runs the folder's stored examples through `predict_batch` as one batch of at
  least two rows, as a micro-batch would: an example that fails validation, an artifact that
  does not load or refuses the engine's rows, and a non-finite output are each a problem.

A problem names the file it is about (`model.json inputs.0.type: ...`, `model.pt2 takes ...`,
`examples.jsonl line 3: ...`), not the folder: `FolderCheck.lines` puts the folder in front, as
the registry reports it. When the artifact cannot run, its examples are not reported one by one
as failing too: the one cause is the line.

A folder may come from anyone, and `torch.export.load` is not safe on a hostile archive (torch
2.13 says so itself): it unpickles the archive's sample inputs with a fallback to full pickle
(code runs), unpickles weights and constants flagged `use_pickle`, loads AOTInductor shared
libraries, evaluates the graph's symbolic shapes with `sympy.sympify` (an `eval`), and the graph
may call any registered op, `aten.from_file` included (reads, and with `shared=True` writes, any
file). So no archive reaches torch unvetted: `vet_archive` reads the zip's directory and its few
small members without torch and refuses anything outside what `torch.export.save` writes for a
plain program (see its docstring). Discovery (`open_folder`) vets each artifact; `examine` vets
it again just before loading; `load_program` vets the bytes it then loads, so a file swapped
after the check is not the one loaded. The program's guards are pasted into a Python function
that `.module()` execs, so they are vetted too.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import os
import pickletools
import re
import struct
import threading
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from engine.models.examples import stored_examples
from engine.models.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    UnsafeFile,
    open_member,
    read_member,
    size_text,
)
from engine.models.runtime import FeatureRow, LoadedModel

if TYPE_CHECKING:
    from torch.export import ExportedProgram

# Lines of one kind (examples failing validation, non-finite outputs) named before "and N more".
MAX_LISTED = 5
# A library's error can run to pages (torch.export's do); a line keeps this much of its first line.
MAX_MESSAGE = 300

# The largest artifact read. torch.export.load holds the whole archive in memory; the engine runs
# small models on CPU, and a bigger file is more likely a mistake or an attack than a model.
MAX_ARTIFACT_BYTES = 2 << 30
# torch.export.save stores its members uncompressed, so they unpack to about the file's size; a
# zip whose members claim far more is a zip bomb (1 MB of deflated zeros cost 3 GB and 9 s).
MAX_EXPANSION = 4
# Members and central directory, checked from the zip's end record before the directory is
# parsed (a directory of millions of entries would cost gigabytes as Python objects). An archive
# has about two members per tensor.
MAX_ARCHIVE_MEMBERS = 100_000
MAX_DIRECTORY_BYTES = 32 << 20
# The archive members vet_archive reads and parses: the program's graph (JSON), the weights' and
# constants' configs, the sample inputs (a small torch.save file).
MAX_MEMBER_READ = 128 << 20
# A symbolic shape expression in the graph, e.g. "Mul(Integer(2), Symbol('s77', ...))".
MAX_EXPRESSION_CHARS = 10_000
# The largest literal exponent in one: a shape is a size squared or cubed, not 10**(10**11).
MAX_LITERAL_EXPONENT = 64


@dataclass
class FolderCheck:
    """What checking one model folder found: its manifest and model when they could be read,
    the problems (none when it is fine) and how many stored examples ran."""

    folder: Path
    manifest: Manifest | None = None
    model: LoadedModel | None = None
    problems: list[str] = field(default_factory=list)
    examples: int = 0
    # The artifact is there, readable and passed `vet_archive` (a file that is no zip at all
    # is left for the load to report, with the examples' own problems).
    artifact_ok: bool = False

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


# quiet_torch_logs may be entered by several threads at once (two adds, a check beside the
# engine's load): the first saves and silences, the last restores. Each saving and restoring for
# itself left the loggers off for good when the blocks interleaved.
_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: list[tuple[logging.Logger, bool]] = []


@contextlib.contextmanager
def quiet_torch_logs() -> Iterator[None]:
    """Within the block, torch's own loggers are off. A failed `torch.export.load` logs the
    traceback of its first attempt, a failed export the graph it traced, each on a stderr
    handler of torch's own: to a user that reads as a crash, and the exception raised says
    what they need. Process-wide while it lasts: a warning another thread's torch logs in
    that moment is lost too."""
    import torch.export  # noqa: F401  (its loggers, and export's, exist once it is imported)

    global _quiet_depth
    with _quiet_lock:
        if _quiet_depth == 0:
            names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "torch"]
            loggers = [logging.getLogger(name) for name in ["torch", *names]]
            _quiet_saved[:] = [(logger, logger.disabled) for logger in loggers]
            for logger in loggers:
                logger.disabled = True
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                for logger, disabled in _quiet_saved:
                    logger.disabled = disabled
                _quiet_saved.clear()


def read_manifest_problems(folder: Path) -> tuple[Manifest | None, list[str]]:
    """The folder's manifest, or every reason it cannot be used: one line per failing field,
    in the form `read_manifest` gives its first (`model.json task: Input should be ...`)."""
    try:
        data = read_member(folder, "model.json", MAX_MANIFEST_BYTES)
    except UnsafeFile as exc:
        return None, [f"model.json: {exc}"]
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
    """What can be checked without torch: the manifest, the tokenizer, the artifact (there, and
    nothing in it the engine refuses to load: `vet_archive`). `model` is set when the manifest
    and tokenizer could be read."""
    check = FolderCheck(folder)
    check.manifest, check.problems = read_manifest_problems(folder)
    manifest = check.manifest
    if manifest is None:
        return check
    problem = artifact_problem(folder, manifest.artifact, not_zip_too=False)
    if problem is not None:
        check.problems.append(problem)
    else:
        check.artifact_ok = True
    try:
        check.model = LoadedModel.from_manifest(manifest, folder)
    except ManifestError as exc:  # the tokenizer: its message starts with the folder
        check.problems.append(str(exc).removeprefix(f"{folder}: "))
    return check


def check_folder(folder: Path) -> FolderCheck:
    """Everything `open_folder` and `examine` find, as `inferdeck models check` reports it."""
    check = open_folder(folder)
    manifest = check.manifest
    if manifest is None or not check.artifact_ok:
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
        try:
            rows.append(model.features(inputs))
        except ValueError as exc:  # the tokenizer failing on the text
            bad.append(f"{example.where}: {exc}")
            continue
        places.append(example.where)
    # Vetted again just before torch reads it: the file may have changed since discovery.
    refused = artifact_problem(model.folder, model.manifest.artifact, not_zip_too=True)
    if refused is not None:
        return [refused, *listing(bad)], 0
    try:
        with _load_lock, quiet_torch_logs():
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
    artifact = manifest.artifact
    try:
        program = load_program(folder, artifact)
    except FileNotFoundError:
        return [f"missing {artifact}"]
    except (UnsafeFile, ArchiveRefused) as exc:
        return [f"{artifact}: {exc}"]
    except OSError as exc:
        return [f"{artifact}: cannot read ({exc.strerror})"]
    except Exception as exc:
        return [f"{artifact}: not a torch.export archive ({one_line(exc)})"]
    return signature_problems(program, manifest)


# Vetting an archive before torch reads it --------------------------------------------------

# torch.export's deserializer keeps its state in a module global: two loads at once in two
# threads fail ("_CURRENT_DESERIALIZER is already set"). Every load here takes this lock
# (re-entrant: `examine` holds it around `LoadedModel.load`, which may load through here).
_load_lock = threading.RLock()


class ArchiveRefused(Exception):
    """An artifact that is not handed to torch, and why (one line). `not_zip`: no zip at all,
    which torch cannot do anything with either; discovery leaves that one to the load to
    report."""

    def __init__(self, message: str, not_zip: bool = False) -> None:
        super().__init__(message)
        self.not_zip = not_zip


def load_program(folder: Path, name: str) -> ExportedProgram:
    """The artifact `folder / name` as `torch.export.load` gives it, from its bytes read once,
    vetted (`vet_archive`) and then loaded: the bytes vetted are the bytes loaded.
    FileNotFoundError, UnsafeFile, OSError or ArchiveRefused before torch sees anything; torch's
    own error when the archive is vetted but torch cannot load it."""
    import torch

    data = read_member(folder, name, MAX_ARTIFACT_BYTES)
    vet_archive(io.BytesIO(data))
    with _load_lock, quiet_torch_logs():
        return torch.export.load(io.BytesIO(data))


def artifact_problem(folder: Path, name: str, *, not_zip_too: bool) -> str | None:
    """Why the artifact is not to be loaded, as a problem line: missing, not a regular file in
    the folder, too large, or refused by `vet_archive` (a file that is no zip only when
    `not_zip_too`); None when torch may read it."""
    try:
        with open_member(folder, name, MAX_ARTIFACT_BYTES) as fh:
            vet_archive(fh)
    except FileNotFoundError:
        return f"missing {name}"
    except UnsafeFile as exc:
        return f"{name}: {exc}"
    except ArchiveRefused as exc:
        return f"{name}: {exc}" if not_zip_too or not exc.not_zip else None
    except OSError as exc:
        return f"{name}: cannot read ({exc.strerror})"
    return None


# What `torch.export.save` writes for a program, under the archive's one root folder: these
# members and no others. Left out on purpose: `data/aotinductor/` (compiled shared libraries the
# load would dlopen), `custom_obj_*` and `opaque_obj_*` constants (pickles), the legacy
# `data/weights/<model>.pt` and `.pt` constants files, and the old format's root `version` and
# `serialized_*.pt` (all unpickled, with a fallback to full pickle).
_PT2_MEMBER = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/\w+\.json|data/sample_inputs/\w+\.pt"
    r"|data/weights/(?:\w+_weights_config\.json|weight_\d+)"
    r"|data/constants/(?:\w+_constants_config\.json|tensor_\d+)"
    r"|extra/[\w.\-]+",
    re.ASCII,
)
_ROOT = re.compile(r"[\w\-][\w.\-]*", re.ASCII)  # not "..", not hidden
# What torch.save writes for the sample inputs (a tuple of plain tensors): its records, and the
# only globals its pickle may name (what torch.load(weights_only=True) would accept of it).
_TENSOR_FILE_MEMBER = re.compile(
    r"data\.pkl|\.format_version|\.storage_alignment|byteorder|version"
    r"|\.data/version|\.data/serialization_id|data/\d+",
    re.ASCII,
)
_TENSOR_GLOBAL = re.compile(
    r"torch\._utils _rebuild_tensor_v2|collections OrderedDict"
    r"|torch (?:Float|Double|Half|BFloat16|Long|Int|Short|Char|Byte|Bool)Storage",
    re.ASCII,
)
# Opcodes that import or build something a GLOBAL does not name plainly.
_PICKLE_REFUSED = frozenset(
    {"STACK_GLOBAL", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID"}
)
# The graph's calls: ATen and prims ops (but the two that read or write a file named in the
# graph), the higher-order ops that only run subgraphs, and the symbolic-shape arithmetic the
# deserializer accepts (`_SYM_OPS`). Anything else is refused, `torch.ops.higher_order.
# aoti_call_delegate`, `flat_apply` and other namespaces (custom ops, debugprims) included.
_OP = re.compile(r"torch\.ops\.(?:aten|prims)\.(?!__)(\w+)(?:\.(?!__)\w+)?", re.ASCII)
_FILE_OPS = frozenset({"from_file", "save"})
_HIGHER_ORDER = frozenset(
    {
        "cond",
        "map_impl",
        "scan",
        "associative_scan",
        "invoke_subgraph",
        "wrap_with_set_grad_enabled",
        "wrap_with_autocast",
        "auto_functionalized",
        "auto_functionalized_v2",
        "out_dtype",
    }
)
_SYMBOLIC = re.compile(
    r"_operator\.(?:add|and_|eq|floordiv|ge|gt|le|lshift|lt|mod|mul|ne|neg|or_|pos|pow|rshift"
    r"|sub|truediv)|math\.trunc|torch\.(?:sym_float|sym_int|sym_ite|sym_max|sym_min|sym_not"
    r"|_sym_sqrt)"
)
# A symbolic shape as the serializer writes it (sympy's srepr): calls of these sympy and
# torch.utils._sympy classes on strings, numbers and these keywords. sympify evaluates the
# string with Python's eval, so nothing else may appear in it: no attribute, no other name.
_SYMPY_NAME = re.compile(
    r"Symbol|Integer|Float|Rational|Add|Mul|Pow|Mod|Max|Min|Abs|floor|ceiling|Piecewise"
    r"|ExprCondPair|Eq|Ne|Lt|Le|Gt|Ge|Equality|Unequality|StrictLessThan|StrictGreaterThan"
    r"|LessThan|GreaterThan|And|Or|Not|oo|zoo|nan|int_oo|true|false|FloorDiv|ModularIndexing"
    r"|Where|PythonMod|CleanDiv|CeilToInt|FloorToInt|CeilDiv|IntTrueDiv|FloatTrueDiv|LShift"
    r"|RShift|IsNonOverlappingAndDenseIndicator|TruncToFloat|TruncToInt|RoundToInt"
    r"|RoundDecimal|ToFloat|FloatPow|PowByNatural|Identity|(?:OpaqueUnaryFn|BitwiseFn)_[a-z_]+",
    re.ASCII,
)
_SYMPY_KEYWORD = re.compile(
    r"positive|negative|nonnegative|nonpositive|integer|real|finite|infinite|zero|nonzero|even"
    r"|odd|precision|evaluate"
)
_SYMPY_STRING = re.compile(r"[\w.+\-]{1,100}", re.ASCII)
_POWERS = frozenset({"Pow", "PowByNatural", "FloatPow", "LShift"})  # x << n is x * 2**n
# The program's guards (`guards_code`), which `.module()` writes into a Python function and
# runs with exec on every call: torch writes checks of the inputs' sizes, such as
# "(L['x'].size()[0] % 2) == 0". Only that: comparisons, + - * / // %, the sizes and `math`.
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})
_GUARD_NODES = (
    ast.Expression, ast.Load, ast.Compare, ast.cmpop, ast.BoolOp, ast.boolop, ast.BinOp,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.UnaryOp, ast.USub, ast.UAdd,
    ast.Not, ast.Subscript,
)  # fmt: skip
_IDENTIFIER = re.compile(r"[A-Za-z_]\w{0,99}", re.ASCII)


def vet_archive(fh: IO[bytes]) -> None:
    """Raise ArchiveRefused unless `fh` (an open artifact) is a zip of what `torch.export.save`
    writes for a plain program, read without torch:
    - at most `MAX_ARCHIVE_MEMBERS` members under one root, unpacking to at most
      `MAX_EXPANSION` times the file's size, every name one of `_PT2_MEMBER` (no traversal, no
      compiled code, no legacy pickles), none twice;
    - every weight and constant stored as raw bytes (`use_pickle` false), none a custom object;
    - the sample inputs a torch.save file whose pickle names only tensor-rebuilding globals;
    - every guard a plain check of input sizes (`_plain_guard`; `.module()` execs them), every
      call in the graph an allowed op (`_OP`, `_HIGHER_ORDER`, `_SYMBOLIC`), every symbolic
      shape a plain sympy expression (`_plain_expression`; sympify evaluates it)."""
    size = fh.seek(0, os.SEEK_END)
    with _open_zip(fh, size, "not a torch.export archive (not a zip file)") as archive:
        members = _members(archive, "the archive")
        if "archive_format" not in members:
            if "data.pkl" in members:
                raise ArchiveRefused(
                    "a torch.save file (pickled tensors), not a torch.export archive: "
                    "save the module with torch.export.save"
                )
            raise ArchiveRefused("not a torch.export archive (it has no archive_format)")
        unpacked = sum(info.file_size for info in members.values())
        if unpacked > MAX_ARTIFACT_BYTES or unpacked > MAX_EXPANSION * size:
            raise ArchiveRefused(
                f"its members unpack to {size_text(unpacked)} from a {size_text(size)} file; "
                "torch.export.save stores them uncompressed (a zip bomb?)"
            )
        for name, info in members.items():
            if _PT2_MEMBER.fullmatch(name) is None:
                raise ArchiveRefused(
                    f"holds {info.filename!r}, which is not part of a torch.export program "
                    "(InferDeck loads no compiled code and no pickled objects)"
                )
        for name, info in members.items():
            if name.endswith("_config.json"):
                _vet_config(_read(archive, info), name)
            elif name.startswith("models/"):
                _vet_graph(_read(archive, info), name)
            elif name.startswith("data/sample_inputs/"):
                _vet_tensor_file(_read(archive, info), name)


def _open_zip(fh: IO[bytes], size: int, not_zip: str) -> zipfile.ZipFile:
    """`fh` (`size` bytes) as a zip that Python and torch read alike (`_directory_extent`), of
    at most `MAX_ARCHIVE_MEMBERS` members; ArchiveRefused(`not_zip`) when it is no such zip."""
    extent = _directory_extent(fh, size)
    if extent is None:
        raise ArchiveRefused(not_zip, not_zip=True)
    entries, directory = extent
    if entries > MAX_ARCHIVE_MEMBERS or directory > MAX_DIRECTORY_BYTES:
        raise ArchiveRefused(
            f"a zip of {entries} members ({size_text(directory)} of directory); a torch.export "
            f"archive has a few per tensor, at most {MAX_ARCHIVE_MEMBERS}"
        )
    try:
        archive = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ArchiveRefused(not_zip, not_zip=True) from None
    if len(archive.infolist()) != entries:  # torch's reader goes by the count, Python's by size
        archive.close()
        raise ArchiveRefused(not_zip, not_zip=True)
    return archive


def _directory_extent(fh: IO[bytes], size: int) -> tuple[int, int] | None:
    """The zip's member count and central directory size from its end records (the zip64 one
    when there is one, as torch always writes it), or None when the file does not end with
    them: torch writes no archive comment, so the classic record is the last 22 bytes.

    The directory must end where the end records begin. Python's zipfile assumes so (and takes
    any difference for data prepended to the zip), torch's reader trusts the recorded offset:
    with a gap the two would read two different directories, and the one vetted here would not
    be the one torch loads."""
    if size < 22:
        return None
    fh.seek(size - 22)
    end = fh.read(22)
    if end[:4] != b"PK\x05\x06" or end[20:22] != b"\0\0":
        return None
    entries, directory, offset = struct.unpack("<HII", end[10:20])
    records = size - 22  # where the end records begin
    if size >= 42:
        fh.seek(size - 42)
        locator = fh.read(20)
        if locator[:4] == b"PK\x06\x07":  # zip64 (torch writes it always): its record rules
            records = struct.unpack("<Q", locator[8:16])[0]
            if records + 56 > size - 42:
                return None
            fh.seek(records)
            record = fh.read(56)
            if record[:4] != b"PK\x06\x06":
                return None
            entries, directory, offset = struct.unpack("<QQQ", record[32:56])
    if offset + directory != records:
        return None
    return entries, directory


def _members(archive: zipfile.ZipFile, what: str) -> dict[str, zipfile.ZipInfo]:
    """The zip's members by name below its one root folder (torch reads them so). Refused: a
    second root, a name with no root, or a name twice (zip readers differ on which copy wins:
    the one vetted must be the one torch reads)."""
    members: dict[str, zipfile.ZipInfo] = {}
    roots = set()
    for info in archive.infolist():
        root, _, name = info.filename.partition("/")
        if not name or _ROOT.fullmatch(root) is None or name in members:
            raise ArchiveRefused(f"{what} holds {info.filename!r}, which torch would not write")
        roots.add(root)
        members[name] = info
    if len(roots) > 1:
        raise ArchiveRefused(f"{what} has {len(roots)} root folders; torch writes one")
    return members


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_MEMBER_READ:
        raise ArchiveRefused(f"{info.filename} is larger than {size_text(MAX_MEMBER_READ)}")
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise ArchiveRefused(f"{info.filename} cannot be read ({one_line(exc)})") from exc


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ArchiveRefused(f"{name} is not JSON") from None


def _vet_config(data: bytes, name: str) -> None:
    """A weights or constants config: every entry a raw tensor (`weight_N` or `tensor_N`, not
    pickled); a pickled tensor, custom object or opaque object would be unpickled by the load."""
    config = _json(data, name)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise ArchiveRefused(f"{name} is not a torch.export payload config")
    prefix = "weight_" if name.startswith("data/weights/") else "tensor_"
    for fqn, entry in entries.items():
        path = entry.get("path_name") if isinstance(entry, dict) else None
        pickled = entry.get("use_pickle") if isinstance(entry, dict) else None
        if pickled is not False or not isinstance(path, str) or not path.startswith(prefix):
            raise ArchiveRefused(
                f"{name}: {str(fqn)[:80]!r} is stored pickled or as an object, not as a plain "
                "tensor (InferDeck unpickles nothing from a model file)"
            )


def _vet_tensor_file(data: bytes, name: str) -> None:
    """The sample inputs: torch.load reads them with weights_only=True and, when that fails,
    again with full pickle. So the file must be a torch.save zip (a bare pickle takes torch's
    legacy path) whose pickle names only the globals plain tensors need."""
    not_zip = f"{name} is not a torch.save zip of tensors"
    if not data.startswith(b"PK\x03\x04"):
        raise ArchiveRefused(not_zip)
    try:
        inner = _open_zip(io.BytesIO(data), len(data), not_zip)
    except ArchiveRefused as exc:
        raise ArchiveRefused(str(exc)) from None  # inside a zip that is one: not benign
    with inner:
        members = _members(inner, name)
        for member, info in members.items():
            if _TENSOR_FILE_MEMBER.fullmatch(member) is None:
                raise ArchiveRefused(f"{name} holds {info.filename!r}, which is not a tensor's")
        if "data.pkl" not in members:
            raise ArchiveRefused(f"{name} is not a torch.save zip of tensors")
        pickled = _read(inner, members["data.pkl"])
    try:
        for opcode, arg, _ in pickletools.genops(pickled):
            if opcode.name in _PICKLE_REFUSED or (
                opcode.name == "GLOBAL" and _TENSOR_GLOBAL.fullmatch(str(arg)) is None
            ):
                what = str(arg).replace(" ", ".") if opcode.name == "GLOBAL" else opcode.name
                raise ArchiveRefused(
                    f"{name} would call {what[:80]} when unpickled; a file of tensors does not"
                )
    except ValueError:
        raise ArchiveRefused(f"{name} is not a pickle of tensors") from None


def _vet_graph(data: bytes, name: str) -> None:
    """The serialized program: every guard a plain check of sizes, every call target allowed,
    every symbolic shape a plain sympy expression. Walked without recursion (a deep graph is
    not a deep Python stack)."""
    program = _json(data, name)
    guards = program.get("guards_code", []) if isinstance(program, dict) else []
    if not isinstance(guards, list) or not all(
        isinstance(guard, str) and _plain_guard(guard) for guard in guards
    ):
        raise ArchiveRefused(f"{name} has guard code that is not a plain check of input sizes")
    stack = [program]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(value, str):
                    stack.append(value)
                elif key in ("target", "as_operator") and not _allowed_call(value):
                    raise ArchiveRefused(
                        f"{name} calls {value[:100]}, which InferDeck does not run from a model "
                        + ("file (it reads or writes files)" if _file_op(value) else "file")
                    )
                elif key == "expr_str" and not _plain_expression(value):
                    raise ArchiveRefused(
                        f"{name} has a symbolic shape that is not a plain expression: "
                        f"{value[:60]!r}"
                    )
        elif isinstance(node, list):
            stack.extend(node)


def _file_op(target: str) -> bool:
    match = _OP.fullmatch(target)
    return match is not None and match.group(1) in _FILE_OPS


def _allowed_call(target: str) -> bool:
    if _SYMBOLIC.fullmatch(target) is not None:
        return True
    if target.startswith("torch.ops.higher_order."):
        return target.removeprefix("torch.ops.higher_order.") in _HIGHER_ORDER
    return _OP.fullmatch(target) is not None and not _file_op(target)


def _huge_power(call: ast.Call) -> bool:
    """A power sympy would compute now, and might not finish: one of literals (torch writes
    powers of sizes, `PowByNatural(Symbol('s77', ...), Integer(2))`, never of numbers alone;
    nested, 10**60 raised to 60 a few times runs to millions of digits), or one with a literal
    exponent past `MAX_LITERAL_EXPONENT`."""
    if not isinstance(call.func, ast.Name) or call.func.id not in _POWERS or len(call.args) != 2:
        return False
    base, exponent = call.args
    symbolic = any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Symbol"
        for node in ast.walk(base)
    )
    if not symbolic:
        return True
    if isinstance(exponent, ast.Call) and len(exponent.args) == 1:
        exponent = exponent.args[0]  # Integer(7) or Integer('7')
    value = exponent.value if isinstance(exponent, ast.Constant) else None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        return abs(float(value)) > MAX_LITERAL_EXPONENT
    except ValueError:
        return True


def _plain_guard(text: str) -> bool:
    """Whether `text` is a guard as torch writes it and nothing more (see `_GUARD_METHODS`): it
    is pasted into generated code, so no comment, line break or backslash either."""
    if len(text) > MAX_EXPRESSION_CHARS or any(c in text for c in "#\n\r\\;"):
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    # A string only as a subscript's key (L['x']): "'a' * 10**10" would be one in the way.
    keys = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            ok = node.id in ("L", "math", "inf")
        elif isinstance(node, ast.Attribute):
            in_math = isinstance(node.value, ast.Name) and node.value.id == "math"
            ok = node.attr in _GUARD_METHODS or (in_math and not node.attr.startswith("_"))
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Attribute) and not node.keywords
        elif isinstance(node, ast.Constant):
            value = node.value
            ok = isinstance(value, (bool, int, float)) or (
                isinstance(value, str)
                and id(node) in keys
                and _IDENTIFIER.fullmatch(value) is not None
            )
        else:
            ok = isinstance(node, _GUARD_NODES)
        if not ok:
            return False
    return True


def _plain_expression(text: str) -> bool:
    """Whether `text` is sympy's srepr of a shape and nothing more (see `_SYMPY_NAME`)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            ok = _SYMPY_NAME.fullmatch(node.id) is not None
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and not _huge_power(node)
        elif isinstance(node, ast.keyword):
            ok = node.arg is not None and _SYMPY_KEYWORD.fullmatch(node.arg) is not None
        elif isinstance(node, ast.Constant):
            value = node.value
            ok = isinstance(value, (bool, int, float)) or (
                isinstance(value, str) and _SYMPY_STRING.fullmatch(value) is not None
            )
        elif isinstance(node, ast.UnaryOp):
            ok = isinstance(node.op, (ast.USub, ast.UAdd))
        else:
            ok = isinstance(node, (ast.Expression, ast.Load, ast.USub, ast.UAdd))
        if not ok:
            return False
    return True


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
