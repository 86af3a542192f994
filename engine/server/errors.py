"""The service's two error shapes and the refusal that carries one to the caller.

Every failure on this service's own paths is the envelope `{"error": {code, message, details,
request_id}}`, with each engine error code mapped to the HTTP status a caller should act on.
Under `/v2` the Open Inference Protocol's clients read `{"error": "<message>"}` instead, so an
error there takes that shape (unknown `/v2` paths included). `answer` picks the shape by path.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response

from engine.contracts import ErrorBody, ErrorDetail, ErrorEnvelope

STATUS_BY_CODE = {
    "unknown_model": 404,
    "not_found": 404,
    "overloaded": 503,
    "duplicate_request_id": 409,
    "body_too_large": 413,
    "method_not_allowed": 405,
    "not_ready": 503,
    "internal": 500,
    "inference_failed": 500,
    "storage_failed": 500,
}
RETRY_AFTER_S = 1


class Refusal(Exception):
    """A request turned away: raised by the dataplane and the routes, answered by the app's
    handler and the edge layer with `answer`, in the shape the request's path speaks."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status  # None: the code's status (`status_for`)


def status_for(code: str) -> int:
    return STATUS_BY_CODE.get(code, 422)  # validation, invalid JSON, no model, disabled client


def json_response(
    value: object, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(value), status, headers, media_type="application/json")


def envelope(body: ErrorBody, request_id: str | None = None) -> Response:
    if body.request_id is None:
        body.request_id = request_id
    status = status_for(body.code)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return json_response(ErrorEnvelope(error=body).model_dump(mode="json"), status, headers)


def simple(code: str, message: str, request_id: str | None = None) -> Response:
    body = ErrorBody(code=code, message=message, details=[ErrorDetail(message=message)])
    return envelope(body, request_id)


def documented(body: type[BaseModel], meanings: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` for error statuses: each one's body model and what it means."""
    return {status: {"model": body, "description": what} for status, what in meanings.items()}


def is_oip_path(path: str) -> bool:
    """Whether an error on `path` is answered in OIP's shape rather than the envelope."""
    return path == "/v2" or path.startswith("/v2/")


def oip_error(message: str, status: int) -> Response:
    """OIP's error shape: `{"error": "<message>"}`."""
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    return json_response({"error": message}, status, headers)


def answer(path: str, refusal: Refusal, request_id: str | None) -> Response:
    """`refusal` as the caller on `path` reads it. OIP has no 422: a request it cannot take is
    a 400 there."""
    if is_oip_path(path):
        status = refusal.status or status_for(refusal.code)
        return oip_error(refusal.message, 400 if status == 422 else status)
    response = simple(refusal.code, refusal.message, request_id)
    if refusal.status is not None:
        response.status_code = refusal.status
    return response
