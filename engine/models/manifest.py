"""The model manifest and the pydantic input model generated from it.

The manifest's input fields are the single contract for a model's inputs: `input_model()` turns
them into a pydantic class whose JSON schema drives the desktop form, the CLI's validation and the
HTTP service's OpenAPI document alike.

A model folder may come from anyone (downloaded, or a shared models folder), and discovery reads
every one at start-up, so the manifest is read as untrusted input: its file is read only when it
is a regular file of bounded size inside its folder (`read_member`, which every reader of a
folder's files uses), the files it names are plain names in its folder, and its lists and sizes
have limits that keep the form, the input class and the engine's rows a bounded size.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from engine.contracts import int64

FieldType = Literal["float", "int", "bool", "enum", "image", "text"]
Task = Literal[
    "tabular-classification", "tabular-regression", "image-classification", "text-classification"
]
CLASSIFICATION_TASKS = ("tabular-classification", "image-classification", "text-classification")
# A text field's longest value when the manifest gives none: what a form box and a request take.
DEFAULT_TEXT_LENGTH = 2000
# The largest model.json read. A real one is a few kB (mean and std for a thousand features are
# about 40 kB); discovery reads every folder's at start-up and must not read a 2 GB one whole.
MAX_MANIFEST_BYTES = 4 << 20
# Inputs a manifest may declare: each is a form field and a field of the input class, which
# takes about 0.15 ms to build (100,000 took 16 s at every start-up).
MAX_INPUTS = 1024
# Labels or outputs: one column each of every answer (ImageNet-21k has 21,843 classes).
MAX_OUTPUTS = 100_000
# An enum's choices: a drop-down's entries, looked up by index for every row.
MAX_CHOICES = 10_000
# An image's side in pixels. It sets a row's width, and the engine builds probe rows of that width
# when it loads a model (a 100000x100000 image asked for 240 GB): 2048x2048 is 16 MB a row.
MAX_IMAGE_SIDE = 2048
# A file a manifest names (artifact, tokenizer) is one plain name in the model's folder: no
# folder part, nothing hidden, no "..", so no manifest points outside its folder.
_FILE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}")
# A model's name is also its folder's name (`models add`) and part of URLs: one path component,
# not a hidden one (discovery skips those), ASCII only (no lookalike of another model's name).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}")


class ManifestError(ValueError):
    """A model folder whose manifest cannot be used; the message names the folder."""


class UnsafeFile(ValueError):
    """A file of a model folder that is not read: not a regular file (a FIFO, a device), larger
    than its limit, or a link to a file outside the folder. The message says which, not the
    file: callers put the file's name in front."""


def open_member(folder: Path, name: str, limit: int | None) -> IO[bytes]:
    """`folder / name` opened for reading when it is a regular file of at most `limit` bytes
    (None: any size, for files read a bounded part of) that is inside `folder` (a link is
    followed only to a file within it). FileNotFoundError when there is none, UnsafeFile when
    it must not be read, another OSError when it cannot be.

    Opened without blocking, then checked on the open file itself: a FIFO would block the open,
    and a check by name before opening could be answered by another file than the one read."""
    base = os.path.realpath(folder)
    real = os.path.realpath(folder / name)
    try:
        inside = os.path.commonpath([base, real]) == base
    except ValueError:  # Windows: another drive
        inside = False
    if not inside:
        raise UnsafeFile("a link to a file outside the model's folder")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(real, flags | getattr(os, "O_NOFOLLOW", 0))  # `real` has no link left in it
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile("not a regular file")
        if limit is not None and info.st_size > limit:
            raise UnsafeFile(f"larger than {size_text(limit)}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_member(folder: Path, name: str, limit: int) -> bytes:
    """The bytes of `folder / name`, under `open_member`'s rules. Read as one buffer of the size
    the open file has (`read(limit)` would set aside `limit` bytes first, 2 GB for an archive);
    a file that grows while it is read is refused."""
    with open_member(folder, name, limit) as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(size + 1)
    if len(data) > size:
        raise UnsafeFile("changed while it was read")
    return data


def size_text(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def _file_name(value: str) -> str:
    if _FILE_NAME.fullmatch(value) is None:
        raise ValueError(
            f"{value!r}: a file name in the model's folder (letters, digits, '_', '-' and '.', "
            "not starting with '.'), not a path"
        )
    return value


def _model_name(value: str) -> str:
    if NAME_PATTERN.fullmatch(value) is None:
        raise ValueError(
            f"{value[:80]!r}: up to 64 letters, digits, '_', '-' and '.', not starting with '.'"
        )
    return value


FileName = Annotated[str, AfterValidator(_file_name)]
ImageSide = Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]


class FieldSpec(BaseModel):
    """One input field of a model's manifest; the source of its input schema."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    type: FieldType
    description: str = ""
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] | None = Field(default=None, max_length=MAX_CHOICES)
    shape: list[ImageSide] | None = None  # images: [height, width]
    max_length: int | None = Field(default=None, ge=1, le=100_000)  # text: characters
    default: float | int | bool | str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.type == "enum" and not self.choices:
            raise ValueError(f"enum field {self.name!r} needs choices")
        if self.type == "image" and (not self.shape or len(self.shape) != 2):
            raise ValueError(f"image field {self.name!r} needs a [height, width] shape")
        if self.max_length is not None and self.type != "text":
            raise ValueError(f"max_length is for text fields, not {self.type} {self.name!r}")
        return self

    @property
    def text_length(self) -> int:
        """A text field's longest value in characters."""
        return self.max_length or DEFAULT_TEXT_LENGTH


class OutputSpec(BaseModel):
    """One named number a regression model returns (manifest part)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    unit: str | None = None
    description: str = ""


class ImagePreprocessing(BaseModel):
    """How an image model's input picture is resized and scaled (manifest part)."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[ImageSide, ImageSide]
    scale: float = 16.0  # pixel values are mapped to 0..scale
    invert: Literal["auto", "always", "never"] = "auto"


class TextPreprocessing(BaseModel):
    """How a text model's input is tokenized (manifest part): `tokenizer` is a `tokenizers`
    file in the model's folder; every text becomes `max_tokens` ids, cut or padded with
    `pad_id`."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: FileName = "tokenizer.json"
    max_tokens: int = Field(default=64, ge=1, le=8192)
    pad_id: int = Field(default=0, ge=0)


class Preprocessing(BaseModel):
    """A manifest's preprocessing: standardisation for tabular inputs, image or text handling."""

    model_config = ConfigDict(extra="forbid")

    mean: list[float] | None = None
    std: list[float] | None = None
    image: ImagePreprocessing | None = None
    text: TextPreprocessing | None = None


class Manifest(BaseModel):
    """A model folder's `model.json`: name, task, labels, input fields and artifact; read by
    the registry."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: Annotated[str, AfterValidator(_model_name)]
    version: str
    task: Task
    description: str = ""
    inputs: list[FieldSpec] = Field(min_length=1, max_length=MAX_INPUTS)
    # classifiers: one per output column
    labels: list[str] = Field(default_factory=list, max_length=MAX_OUTPUTS)
    # regressors: one per column
    outputs: list[OutputSpec] = Field(default_factory=list, max_length=MAX_OUTPUTS)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    artifact: FileName = "model.pt2"
    metrics: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fits_task(self) -> Manifest:
        kinds = [spec.type for spec in self.inputs]
        if self.is_classifier:
            if len(self.labels) < 2:
                raise ValueError(f"a {self.task} model needs at least two labels")
            if self.outputs:
                raise ValueError(f"a {self.task} model has labels, not outputs")
        else:
            if not self.outputs:
                raise ValueError("a tabular-regression model needs at least one output")
            if self.labels:
                raise ValueError("a tabular-regression model has outputs, not labels")
        for names, what in ((self.labels, "label"), ([o.name for o in self.outputs], "output")):
            if len(set(names)) != len(names):
                raise ValueError(f"{what} names repeat")
        if len({spec.name for spec in self.inputs}) != len(self.inputs):
            raise ValueError("input names repeat")
        if self.task == "text-classification":
            if kinds != ["text"]:
                raise ValueError("a text-classification model takes exactly one text input")
            if self.preprocessing.text is None:
                self.preprocessing.text = TextPreprocessing()
        elif "text" in kinds:
            raise ValueError(f"a {self.task} model takes no text input")
        if self.task == "image-classification" and kinds.count("image") != 1:
            raise ValueError("an image-classification model takes exactly one image input")
        if self.task.startswith("tabular") and "image" in kinds:
            raise ValueError(f"a {self.task} model takes no image input")
        pre = self.preprocessing
        if (pre.mean is None) != (pre.std is None):
            raise ValueError("preprocessing needs both mean and std, or neither")
        if pre.mean is not None and pre.std is not None:
            if len(pre.mean) != self.feature_count or len(pre.std) != self.feature_count:
                raise ValueError(
                    f"preprocessing mean and std need {self.feature_count} values each, "
                    f"one per feature"
                )
            if any(value == 0 for value in pre.std):
                raise ValueError("preprocessing std has a zero")
        return self

    @property
    def is_classifier(self) -> bool:
        return self.task in CLASSIFICATION_TASKS

    @property
    def output_names(self) -> list[str]:
        """What the model's output columns are: its labels, or its outputs' names."""
        return self.labels if self.is_classifier else [out.name for out in self.outputs]

    @property
    def feature_count(self) -> int:
        """The width of one row the model's `forward` takes."""
        if self.task == "text-classification":
            return self.preprocessing.text.max_tokens if self.preprocessing.text else 64
        count = 0
        for spec in self.inputs:
            count += spec.shape[0] * spec.shape[1] if spec.type == "image" and spec.shape else 1
        return count

    @property
    def image_field(self) -> FieldSpec | None:
        return next((spec for spec in self.inputs if spec.type == "image"), None)


def read_manifest(folder: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(read_member(folder, "model.json", MAX_MANIFEST_BYTES))
    except UnsafeFile as exc:
        raise ManifestError(f"{folder}: model.json: {exc}") from exc
    except OSError as exc:
        raise ManifestError(f"{folder}: cannot read model.json ({exc.strerror})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        place = f"model.json {where}" if where else "model.json"
        raise ManifestError(f"{folder}: {place}: {message}") from exc


def _image_checker(height: int, width: int, low: float, high: float) -> Any:
    def check(value: list[Any]) -> list[float]:
        # Accept either rows of pixels or one flat list; store flat, row-major.
        flat: list[float] = []
        if value and isinstance(value[0], list):
            if len(value) != height or any(len(row) != width for row in value):
                raise ValueError(f"expected {height}x{width} pixels")
            for row in value:
                flat.extend(row)
        else:
            if len(value) != height * width:
                raise ValueError(f"expected {height * width} pixels, got {len(value)}")
            flat = list(value)
        for pixel in flat:
            if not low <= pixel <= high:
                raise ValueError(f"pixel values must be within {low:g}..{high:g}")
        return flat

    return check


def _not_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1.0; a measurement sent as a boolean is a mistake.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


def _annotation(spec: FieldSpec) -> Any:
    if spec.type == "image":
        assert spec.shape is not None
        low = 0.0 if spec.minimum is None else spec.minimum
        high = 255.0 if spec.maximum is None else spec.maximum
        checker = _image_checker(spec.shape[0], spec.shape[1], low, high)
        return Annotated[list[list[float]] | list[float], AfterValidator(checker)]
    if spec.type == "enum":
        assert spec.choices is not None
        return Literal[tuple(spec.choices)]
    if spec.type == "bool":
        return bool
    if spec.type == "text":
        return Annotated[str, Field(min_length=1, max_length=spec.text_length)]
    bounds = Field(ge=spec.minimum, le=spec.maximum)
    if spec.type == "int":  # bounded like every stored integer, after parsing (CSV text too)
        return Annotated[int, bounds, BeforeValidator(_not_bool), AfterValidator(int64)]
    return Annotated[float, bounds, BeforeValidator(_not_bool)]


def input_model(manifest: Manifest) -> type[BaseModel]:
    """A pydantic model for the manifest's input fields (extra fields and NaN/inf rejected)."""
    fields: dict[str, Any] = {}
    for spec in manifest.inputs:
        default = ... if spec.default is None else spec.default
        fields[spec.name] = (
            _annotation(spec),
            Field(default, description=spec.description or None, title=spec.name),
        )
    config = ConfigDict(extra="forbid", allow_inf_nan=False, title=f"{manifest.name} inputs")
    return create_model(f"{manifest.name.title()}Inputs", __config__=config, **fields)
