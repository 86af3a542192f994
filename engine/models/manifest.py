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

FieldType = Literal["float", "int", "bool", "enum", "image"]


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
    default: float | int | bool | str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        if self.type == "enum" and not self.choices:
            raise ValueError(f"enum field {self.name!r} needs choices")
        if self.type == "image" and (not self.shape or len(self.shape) != 2):
            raise ValueError(f"image field {self.name!r} needs a [height, width] shape")
        return self


class ImagePreprocessing(BaseModel):
    """How an image model's input picture is resized and scaled (manifest part)."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int]
    scale: float = 16.0  # pixel values are mapped to 0..scale
    invert: Literal["auto", "always", "never"] = "auto"


class Preprocessing(BaseModel):
    """A manifest's preprocessing: standardisation for tabular inputs, or image handling."""

    model_config = ConfigDict(extra="forbid")

    mean: list[float] | None = None
    std: list[float] | None = None
    image: ImagePreprocessing | None = None


class Manifest(BaseModel):
    """A model folder's `model.json`: name, task, labels, input fields and artifact; read by
    the registry."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    version: str
    task: Literal["tabular-classification", "image-classification"]
    description: str = ""
    inputs: list[FieldSpec] = Field(min_length=1)
    labels: list[str] = Field(min_length=2)
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    artifact: str = "model.pt2"
    metrics: dict[str, float] = Field(default_factory=dict)

    @property
    def feature_count(self) -> int:
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
        raise ManifestError(f"{folder}: model.json {where}: {first['msg']}") from exc


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
