"""Turning one raw row into validated model inputs, or a per-field rejection.

A row is a full request (the contract in `contracts.PredictRequest`) or just the model's input
fields. Validation runs before any database or model work and never raises for bad input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.contracts import ErrorBody, ErrorDetail, PredictRequest
from engine.models.registry import ModelRegistry
from engine.models.runtime import LoadedModel

_FULL_REQUEST_KEY = "input_payload"
_FULL_REQUEST_MARK = b'"input_payload"'


@dataclass(slots=True)
class Validated:
    """A row that passed `RowValidator`: its model, inputs and the request's own fields."""

    model: LoadedModel
    inputs: BaseModel
    client_id: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] | None = None


def _field(loc: tuple[int | str, ...], prefix: str = "") -> str | None:
    parts = [str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-"))]
    path = ".".join(parts)
    if prefix:
        return f"{prefix}.{path}" if path else prefix
    return path or None


def rejection(
    exc: ValidationError, *, prefix: str = "", code: str = "validation_error"
) -> ErrorBody:
    details = []
    for err in exc.errors(include_url=False):
        if err["type"] == "json_invalid":
            reason = err.get("ctx", {}).get("error", err["msg"])
            return ErrorBody(
                code="invalid_json",
                message=f"not valid JSON: {reason}",
                details=[ErrorDetail(message=f"not valid JSON: {reason}", type="json_invalid")],
            )
        details.append(
            ErrorDetail(field=_field(err["loc"], prefix), message=err["msg"], type=err["type"])
        )
    first = details[0]
    where = f"{first.field}: " if first.field else ""
    more = f" (+{len(details) - 1} more)" if len(details) > 1 else ""
    return ErrorBody(code=code, message=f"{where}{first.message}{more}", details=details)


def error(code: str, message: str, field: str | None = None) -> ErrorBody:
    return ErrorBody(
        code=code, message=message, details=[ErrorDetail(field=field, message=message)]
    )


class RowValidator:
    """Validates rows for one default model; full requests may name another registered model."""

    def __init__(
        self,
        registry: ModelRegistry,
        default_model: LoadedModel | None,
        *,
        requests_only: bool = False,
    ) -> None:
        self._registry = registry
        self._default = default_model
        # Network callers send full requests only: anything else is judged as one, so a
        # truncated body reads "not valid JSON", not "no model given".
        self._requests_only = requests_only

    def validate(self, data: bytes | dict[str, Any]) -> Validated | ErrorBody:
        """JSON text goes straight to pydantic's parser (one pass, no dict in between)."""
        mark = _FULL_REQUEST_MARK if isinstance(data, bytes) else _FULL_REQUEST_KEY
        full = self._requests_only or mark in data
        model = self._default
        if not full and model is None:
            return error("no_model", "no model given: use --model or send full requests")
        try:
            if isinstance(data, bytes):
                if full:
                    return self._full(PredictRequest.model_validate_json(data))
                assert model is not None
                return Validated(model, model.inputs.model_validate_json(data))
            if full:
                return self._full(PredictRequest.model_validate(data))
            assert model is not None
            return Validated(model, model.inputs.model_validate(data))
        except ValidationError as exc:
            return rejection(exc)

    def named_model(self, data: bytes | dict[str, Any] | None) -> str | None:
        """The model a row asked for, for a rejection's record: a full request's `model`
        (read again only on this rare path), else the default model."""
        if data is None:
            return None if self._default is None else self._default.name
        mark = _FULL_REQUEST_MARK if isinstance(data, bytes) else _FULL_REQUEST_KEY
        if self._requests_only or mark in data:
            try:
                body = json.loads(data) if isinstance(data, bytes) else data
            except ValueError:
                return None
            named = body.get("model") if isinstance(body, dict) else None
            return named if isinstance(named, str) and named else None
        return None if self._default is None else self._default.name

    def _full(self, request: PredictRequest) -> Validated | ErrorBody:
        model = self._registry.get(request.model)
        if model is None:
            known = ", ".join(self._registry.names())
            return error(
                "unknown_model", f"unknown model {request.model!r} (have: {known})", "model"
            )
        try:
            inputs = model.inputs.model_validate(request.input_payload)
        except ValidationError as exc:
            return rejection(exc, prefix="input_payload")
        return Validated(
            model,
            inputs,
            client_id=request.client_id,
            request_id=request.request_id,
            metadata=request.metadata or None,
        )
