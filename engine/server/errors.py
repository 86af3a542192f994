"""The one error envelope every failure uses: `{"error": {code, message, details, request_id}}`.

Each engine error code maps to the HTTP status a caller should act on.
"""

from __future__ import annotations

import orjson
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
