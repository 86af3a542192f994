"""The OpenAPI document and the shapes it names for the service's own API.

The document is built from the model registry: each model's manifest schema is a named
component, and `/predict`'s body is one of the per-model requests, told apart by `model`. The
OIP routes read raw bodies, so their request schema is added here too (`oip.schema`).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from engine.contracts import ErrorEnvelope, PredictRequest
from engine.models import ModelRegistry
from engine.models.examples import model_example
from engine.models.runtime import LoadedModel
from engine.server.errors import documented
from engine.server.oip.schema import document_infer_body, undescribed

ERROR_RESPONSES = documented(
    ErrorEnvelope,
    {
        404: "unknown model",
        409: "request_id already used",
        413: "body too large",
        422: "invalid request: per-field details",
        500: "internal error (no internals are shown)",
        503: "overloaded (with Retry-After) or not ready",
    },
)
SCHEMA_REF = "#/components/schemas/{model}"


class ModelInfo(BaseModel):
    """One loaded model as `GET /models` and `GET /models/{name}` describe it."""

    name: str
    version: str
    task: str
    description: str
    labels: list[str]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    # Added later, with a default: an answer without it is still a `ModelInfo`.
    example: dict[str, Any] = Field(
        default_factory=dict,
        description="The model's own example input (its first held-out row, as the app's "
        "form starts from): a valid `input_payload`",
    )


class ModelList(BaseModel):
    """`GET /models`' answer."""

    model_config = ConfigDict(json_schema_extra=undescribed)  # the document has no description

    models: list[ModelInfo]


def model_info(model: LoadedModel) -> dict[str, Any]:
    """`ModelInfo`'s shape: the manifest's input schema, what `outputs` will hold, and the
    model's own example (read once per model: the dataplane keeps the answer)."""
    labels = model.labels
    return {
        "name": model.name,
        "version": model.version,
        "task": model.manifest.task,
        "description": model.manifest.description,
        "labels": labels,
        "input_schema": model.inputs.model_json_schema(),
        "output_schema": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "enum": labels},
                "scores": {
                    "type": "object",
                    "properties": {label: {"type": "number"} for label in labels},
                    "required": labels,
                    "additionalProperties": False,
                },
            },
            "required": ["label", "scores"],
        },
        "example": model_example(model.manifest, model.folder),
    }


def request_model(model: LoadedModel) -> type[PredictRequest]:
    """The request contract narrowed to one model: `model` is its name, `input_payload` its
    manifest's input fields. Documentation only: `/predict` validates the generic contract
    and then the payload, so an error names `input_payload.<field>` either way."""
    name_type: Any = Literal[model.name]  # a runtime value: pydantic reads it, mypy need not
    created: type[PredictRequest] = create_model(
        f"{model.inputs.__name__.removesuffix('Inputs')}PredictRequest",
        __base__=PredictRequest,
        __doc__=f"A prediction request for model {model.name!r} (version {model.version}).",
        model=(name_type, ...),
        input_payload=(model.inputs, ...),
    )
    return created


def document_models(document: dict[str, Any], registry: ModelRegistry) -> None:
    """Add each model's input and request schemas to an OpenAPI `document` as components, and
    make `/predict`'s body a `oneOf` of the requests with `model` as the discriminator."""
    document_infer_body(document, SCHEMA_REF)
    requests = {name: request_model(registry.models[name]) for name in registry.names()}
    if not requests:  # no models: the generic contract from the route stays
        return
    refs, top = models_json_schema(
        [(r, "validation") for r in requests.values()], ref_template=SCHEMA_REF
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
    mapping = {name: refs[(r, "validation")]["$ref"] for name, r in requests.items()}
    schema = {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "model", "mapping": mapping},
    }
    operation = document["paths"]["/predict"]["post"]
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": schema}},
    }


class InferDeckAPI(FastAPI):
    """FastAPI whose OpenAPI document carries the registry's per-model schemas (`create_app`
    makes it)."""

    def __init__(self, registry: ModelRegistry, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.registry = registry

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document from the routes, with the registry's schemas added once."""
        if self.openapi_schema is None:
            document = super().openapi()  # cached by FastAPI in `openapi_schema`
            document_models(document, self.registry)
        return self.openapi_schema or {}
