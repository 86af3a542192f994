"""Predict forms for the targets that are not OIP: an `inferdeck` service, and a plain JSON URL.

This project's service describes each model in `GET /models/{m}`: its input JSON schema (the
manifest's fields with their types, ranges, choices and text lengths) and its labels (none for a
regressor, whose answer is `values` by output name). `form_from_info` turns that into the same
`RemoteForm` an OIP target's metadata gives (`engine.remote.oip_form`): one field per property,
validated with the schema's own rules (a text field's length included), and the labels that name
the answer's scores. It starts from the example the service offers (`example`: the model's own,
its first held-out row, as a local form starts from) and only where it offers none from one
`engine.remote.examples` makes from the schema (the middle of each range; never a made-up
text or list).

A `json` target has no metadata: its form is one JSON text box whose document is sent as the
payload (`raw_form`), and the form says so.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from engine.remote.classify import classify, describe
from engine.remote.client import TargetClient
from engine.remote.credentials import redact_url, scrub
from engine.remote.examples import example_from_schema, offered_example
from engine.remote.oip_form import FormField, FormKind, RemoteForm, not_bool, number_list
from engine.remote.protocols import ProtocolError


def model_info_path(model: str) -> str:
    return f"/models/{quote(model, safe='')}"


async def fetch_json(client: TargetClient, path: str) -> Any:
    """GET `path` on the client's target and decode it; `ProtocolError` says why not, in words
    without the target's credentials."""
    target = client.target
    shown = redact_url(target.url(path))
    try:
        status, body = await client.get(path)  # capped in bytes and in time
    except Exception as exc:
        text = scrub(f"{classify(exc)}: {describe(exc)}", target.secret_values())
        raise ProtocolError(f"cannot read {shown}: {text}") from exc
    if status != 200:
        raise ProtocolError(f"{shown} answered {status}; is the model loaded?")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"{shown} did not answer JSON") from exc


async def fetch_inferdeck_form(client: TargetClient) -> RemoteForm:
    """Read the target's `GET /models/{m}` and build its form; `ProtocolError` says why not."""
    target = client.target
    if not target.model:
        raise ProtocolError("an inferdeck target needs a model to build a form for")
    info = await fetch_json(client, model_info_path(target.model))
    return form_from_info(target.name, target.model, info)


def form_from_info(target: str, model: str, info: Any) -> RemoteForm:
    """The form for a `GET /models/{m}` answer (`engine.server.openapi.ModelInfo`'s shape)."""
    schema = info.get("input_schema") if isinstance(info, dict) else None
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        raise ProtocolError(f"model {model!r}: the answer has no input schema with fields")
    assert isinstance(schema, dict)
    required = set(schema.get("required", []))
    fields: list[FormField] = []
    model_fields: dict[str, Any] = {}
    for i, (name, prop) in enumerate(properties.items()):
        if not isinstance(prop, dict):
            continue
        kind, annotation, choices = _field_rule(prop)
        description = str(prop.get("description") or "")
        if kind == "text" and not _is_string(prop) and "numbers" not in description:
            description = (description + " — numbers separated by commas").lstrip(" —")
        fields.append(FormField(name, kind, choices, description))
        default: Any = ... if name in required else None
        if name not in required:
            annotation = annotation | None
        # Field names need not be Python names: fields are `f0`, `f1`... aliased, as for OIP.
        model_fields[f"f{i}"] = (
            annotation,
            Field(
                default,
                alias=name,
                title=name,
                description=description or None,
                ge=prop.get("minimum") if kind in ("float", "int") else None,
                le=prop.get("maximum") if kind in ("float", "int") else None,
            ),
        )
    config = ConfigDict(extra="forbid", allow_inf_nan=False, title=f"{model} inputs")
    inputs_model: type[BaseModel] = create_model("RemoteInputs", __config__=config, **model_fields)
    labels = info.get("labels") if isinstance(info, dict) else None
    return RemoteForm(
        target,
        model,
        fields,
        inputs_model,
        (),
        labels=tuple(str(label) for label in labels) if isinstance(labels, list) else (),
        example=_start_values(info, schema, fields, inputs_model),
    )


def _start_values(
    info: Any, schema: dict[str, Any], fields: list[FormField], inputs: type[BaseModel]
) -> dict[str, Any]:
    """What the form starts from: the example the target offers (`offered_example`: the
    model's own, as the local form's), field by field; a value made from the schema (the
    middle of a range, the first choice) only where it offers none, or one the form refuses."""
    offered = offered_example(info)
    made = example_from_schema(schema)
    values: dict[str, Any] = {}
    for f in fields:
        if f.name in offered:
            # A list field is typed as numbers separated by commas: it starts as that text.
            value = offered[f.name]
            values[f.name] = _as_text(value) if isinstance(value, list) else value
        elif f.name in made and f.type != "text":
            # (a list's size is not in the schema, and "x" is no text to start from)
            values[f.name] = made[f.name]
    try:
        inputs.model_validate(values)
    except ValidationError as exc:
        refused = {str(e["loc"][0]) for e in exc.errors() if e["loc"]} & set(offered)
        for f in fields:
            if f.name in refused:
                values.pop(f.name, None)
                if f.name in made and f.type != "text":
                    values[f.name] = made[f.name]
    return values


def _as_text(values: list[Any]) -> str:
    """A list of numbers (or of rows of them) as the form's text for it: "0, 1, 11, 16"."""
    return ", ".join(_as_text(v) if isinstance(v, list) else str(v) for v in values)


def _field_rule(prop: dict[str, Any]) -> tuple[FormKind, Any, list[str] | None]:
    """The form kind, pydantic annotation and choices of one schema property."""
    if prop.get("enum"):
        choices = [str(c) for c in prop["enum"]]
        return "enum", str, choices
    kind = prop.get("type")
    if kind == "integer":
        return "int", Annotated[int, BeforeValidator(not_bool)], None
    if kind == "number":
        return "float", Annotated[float, BeforeValidator(not_bool)], None
    if kind == "boolean":
        return "enum", bool, ["false", "true"]
    if kind == "string":
        # A text model's input: the service's own bounds (`minLength`, `maxLength`), checked
        # as the form is typed rather than after a round trip.
        low, high = prop.get("minLength"), prop.get("maxLength")
        bounds = Field(
            min_length=low if isinstance(low, int) else None,
            max_length=high if isinstance(high, int) else None,
        )
        return "text", Annotated[str, bounds], None
    # Arrays (an image's pixels, as rows or one flat list) and anything else: numbers.
    return "text", Annotated[list[Any], BeforeValidator(number_list(None, float))], None


def _is_string(prop: dict[str, Any]) -> bool:
    """Whether a schema property is a string (a text field), not a list typed as text."""
    return prop.get("type") == "string" and not prop.get("enum")


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if not value.strip():
        raise ValueError("type a JSON document")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from exc


def raw_form(target: str, model: str | None) -> RemoteForm:
    """A `json` target's form: one JSON text box, sent as it is (the target's body template,
    if it has one, wraps it)."""
    config = ConfigDict(extra="forbid", title="JSON body")
    inputs_model: type[BaseModel] = create_model(
        "RawInputs",
        __config__=config,
        body=(Annotated[Any, BeforeValidator(_parse_json)], Field(..., title="body")),
    )
    note = (
        f"{target} takes raw JSON: there is no model metadata to build a form from, "
        "so type the JSON document to send."
    )
    return RemoteForm(
        target,
        model or "",
        [FormField("body", "json", None, "the JSON document sent to the target")],
        inputs_model,
        (),
        example={"body": "{}"},
        raw=True,
        note=note,
    )
