"""What a remote target is: base URL, protocol, model, headers, timeouts and TLS settings.

A `Target` is plain data, validated by pydantic and stored in SQLite. It never holds a secret: a
bearer token lives in `engine.remote.secrets` and is joined in only when a request is built, so a
stored, logged or exported target cannot leak it. `redacted_headers` is what any display shows.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Protocol = Literal["inferdeck", "oip", "json"]
PROTOCOLS: tuple[Protocol, ...] = ("inferdeck", "oip", "json")

# Header names whose values are credentials; shown as "***" everywhere.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)
REDACTED = "***"


class Target(BaseModel):
    """One endpoint the operator points InferDeck at."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    base_url: str
    protocol: Protocol = "inferdeck"
    model: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=600)
    verify_tls: bool = True
    # `json` protocol only: the request body, with `{{payload}}` standing for the payload's JSON.
    body_template: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.strip().rstrip("/")

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or any(c in name for c in " \t\r\n:"):
                raise ValueError(f"bad header name {name!r}")
        return value

    def redacted_headers(self) -> dict[str, str]:
        return redact_headers(self.headers)

    def url(self, path: str) -> str:
        return self.base_url + path if path else self.base_url


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


class HealthPaths(BaseModel):
    """The three probes a target answers; health is judged by HTTP status, never by body."""

    model_config = ConfigDict(frozen=True)

    live: str
    ready: str
    model_ready: str | None


def health_paths(target: Target) -> HealthPaths:
    model = quote(target.model, safe="") if target.model else None
    if target.protocol == "inferdeck":
        return HealthPaths(
            live="/health", ready="/ready", model_ready=f"/models/{model}" if model else None
        )
    if target.protocol == "oip":
        return HealthPaths(
            live="/v2/health/live",
            ready="/v2/health/ready",
            model_ready=f"/v2/models/{model}/ready" if model else None,
        )
    # A plain JSON API has no health contract: reaching its URL at all is the only signal.
    return HealthPaths(live="", ready="", model_ready=None)


def predict_path(target: Target) -> str:
    if target.protocol == "inferdeck":
        return "/predict"
    if target.protocol == "oip":
        if not target.model:
            raise ValueError("an OIP target needs a model")
        return f"/v2/models/{quote(target.model, safe='')}/infer"
    return ""


def describe_validation(exc: ValidationError) -> str:
    """One line naming each bad field: `timeout_s: Input should be greater than 0`."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "target"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)
