"""The model manifest and the pydantic input model generated from it.

The manifest's input fields are the single contract for a model's inputs: `input_model()` turns
them into a pydantic class whose JSON schema drives the desktop form, the CLI's validation and the
HTTP service's OpenAPI document alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

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


class ManifestError(ValueError):
    """A model folder whose manifest cannot be used; the message names the folder."""


class FieldSpec(BaseModel):
    """One input field of a model's manifest; the source of its input schema."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    type: FieldType
    description: str = ""
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    choices: list[str] | None = None
    shape: list[int] | None = None  # images: [height, width]
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

    size: tuple[int, int]
    scale: float = 16.0  # pixel values are mapped to 0..scale
    invert: Literal["auto", "always", "never"] = "auto"


class TextPreprocessing(BaseModel):
    """How a text model's input is tokenized (manifest part): `tokenizer` is a `tokenizers`
    file in the model's folder; every text becomes `max_tokens` ids, cut or padded with
    `pad_id`."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: str = "tokenizer.json"
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

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    version: str
    task: Task
    description: str = ""
    inputs: list[FieldSpec] = Field(min_length=1)
    labels: list[str] = Field(default_factory=list)  # classifiers: one per output column
    outputs: list[OutputSpec] = Field(default_factory=list)  # regressors: one per column
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    artifact: str = "model.pt2"
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
    path = folder / "model.json"
    try:
        return Manifest.model_validate_json(path.read_bytes())
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
