"""The OpenAPI document and the shapes it names for the service's own API.

The document is built from the model registry: each model's manifest schema is a named
component, and `/predict`'s body is one of the per-model requests, told apart by `model`; its
answer likewise is one of the per-model responses, whose `outputs` follow the model's task (a
classifier's `label` and `scores`, a regressor's `values` by output name, units in their
descriptions). The OIP routes read raw bodies, so their request schema is added here too
(`oip.schema`).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from engine.contracts import ErrorEnvelope, PredictRequest
from engine.models import ModelRegistry
from engine.models.examples import model_example
from engine.models.manifest import OutputSpec
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


def _output_description(spec: OutputSpec) -> str:
    """An output's description with its unit, as the document and `GET /models/{m}` say it."""
    unit = f"Unit: {spec.unit}." if spec.unit else ""
    return " ".join(part for part in (spec.description, unit) if part)


def output_schema(model: LoadedModel) -> dict[str, Any]:
    """The JSON schema of what a prediction's `outputs` holds for `model`: a classifier's
    `label` (one of its labels) and a score per label; a regressor's `values`, one number per
    output name, each described with its unit. Every name is required, no other is given."""
    if model.manifest.is_classifier:
        labels = model.labels
        return {
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
        }
    values: dict[str, Any] = {}
    for spec in model.manifest.outputs:
        values[spec.name] = {"type": "number", "title": spec.name}
        description = _output_description(spec)
        if description:
            values[spec.name]["description"] = description
    return {
        "type": "object",
        "properties": {
            "values": {
                "type": "object",
                "properties": values,
                "required": model.output_names,
                "additionalProperties": False,
            }
        },
        "required": ["values"],
    }


def model_info(model: LoadedModel) -> dict[str, Any]:
    """`ModelInfo`'s shape: the manifest's input schema, what `outputs` will hold, and the
    model's own example (read once per model: the dataplane keeps the answer). A regressor
    has no labels: its output names are in `output_schema`."""
    return {
        "name": model.name,
        "version": model.version,
        "task": model.manifest.task,
        "description": model.manifest.description,
        "labels": model.labels,
        "input_schema": model.inputs.model_json_schema(),
        "output_schema": output_schema(model),
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


def _free_name(schemas: dict[str, Any], base: str) -> str:
    """A component name not taken yet: `base`, else `base2`, `base3`... (two models whose
    names differ only in case make the same prefix)."""
    name, n = base, 1
    while name in schemas:
        n += 1
        name = f"{base}{n}"
    return name


def _one_of(mapping: dict[str, str]) -> dict[str, Any]:
    return {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "model", "mapping": mapping},
    }


def document_responses(document: dict[str, Any], registry: ModelRegistry) -> None:
    """Add each model's outputs and response schemas as components (`<Model>Outputs`,
    `<Model>PredictResponse`), and make `/predict`'s 200 answer a `oneOf` of the responses
    with `model` as the discriminator. Written by hand from the generic `PredictResponse`
    component: only `model` and `outputs` differ from model to model."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    generic = schemas.get("PredictResponse")
    content = (
        document["paths"]["/predict"]["post"]
        .get("responses", {})
        .get("200", {})
        .get("content", {})
        .get("application/json")
    )
    if generic is None or content is None:  # (the route documents both)
        return
    mapping: dict[str, str] = {}
    for name in registry.names():
        model = registry.models[name]
        prefix = model.inputs.__name__.removesuffix("Inputs")
        outputs = _free_name(schemas, f"{prefix}Outputs")
        schemas[outputs] = {"title": outputs, **output_schema(model)}
        response = _free_name(schemas, f"{prefix}PredictResponse")
        narrowed = copy.deepcopy(generic)
        narrowed["title"] = response
        narrowed["description"] = f"The answer of model {name!r} (version {model.version})."
        narrowed["properties"]["model"] = {"type": "string", "const": name, "title": "Model"}
        narrowed["properties"]["outputs"] = {"$ref": SCHEMA_REF.format(model=outputs)}
        schemas[response] = narrowed
        mapping[name] = SCHEMA_REF.format(model=response)
    if mapping:  # no models: the generic answer from the route stays
        content["schema"] = _one_of(mapping)


def document_models(document: dict[str, Any], registry: ModelRegistry) -> None:
    """Add each model's input and request schemas to an OpenAPI `document` as components, and
    make `/predict`'s body a `oneOf` of the requests with `model` as the discriminator (and its
    answer one of the responses: `document_responses`)."""
    document_infer_body(document, SCHEMA_REF)
    requests = {name: request_model(registry.models[name]) for name in registry.names()}
    if not requests:  # no models: the generic contract from the route stays
        return
    refs, top = models_json_schema(
        [(r, "validation") for r in requests.values()], ref_template=SCHEMA_REF
    )
    document.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
    mapping = {name: refs[(r, "validation")]["$ref"] for name, r in requests.items()}
    operation = document["paths"]["/predict"]["post"]
    operation["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": _one_of(mapping)}},
    }
    document_responses(document, registry)


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
