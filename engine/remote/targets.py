"""What a remote target is: base URL, protocol, model, headers, timeouts and TLS settings.

A `Target` is plain data, validated by pydantic. In memory it holds what requests need, credential
header values and credential query parameters included; what is stored in SQLite, logged, exported
or shown is `redacted_url()` and `redacted_headers()`, which follow the one rule in
`engine.remote.credentials` (the real values live in `engine.remote.secrets`). A bearer token is
never in a `Target` at all: it is joined in only when a request is built. User info in the URL
(`http://user:pass@host`) becomes the `Authorization: Basic` header it stands for, so the URL
itself never carries it.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.remote.credentials import REDACTED, pop_user_info, redact_headers, redact_url

Protocol = Literal["inferdeck", "oip", "json"]
PROTOCOLS: tuple[Protocol, ...] = ("inferdeck", "oip", "json")

__all__ = [
    "PROTOCOLS",
    "REDACTED",
    "HealthPaths",
    "Protocol",
    "Target",
    "describe_validation",
    "health_paths",
    "predict_path",
    "redact_headers",
    "redact_url",
]


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
    # The server's own statistics (`engine.remote.server_stats`): a Prometheus exposition
    # endpoint of the server (`--metrics-url`), a Prometheus server in front of a fleet and the
    # label selector of its replicas (`--prometheus`, `--selector`), and whether the sources
    # found on their own (the OIP statistics extension, `/metrics` beside the API) are used.
    metrics_url: str | None = None
    prometheus_url: str | None = None
    prometheus_selector: str | None = Field(default=None, max_length=1000)
    server_stats: bool = True

    @model_validator(mode="before")
    @classmethod
    def _user_info_to_header(cls, data: Any) -> Any:
        """`http://user:pass@host` -> `http://host` plus `Authorization: Basic ...`: the header
        is what the server gets either way, and as a header it is kept like any credential."""
        if not isinstance(data, dict) or not isinstance(data.get("base_url"), str):
            return data
        url, basic = pop_user_info(data["base_url"].strip())
        if basic is None:
            return {**data, "base_url": url}
        headers = data.get("headers") or {}
        if not isinstance(headers, dict):
            return data  # the headers field reports its own error
        if any(str(k).lower() == "authorization" for k in headers):
            raise ValueError(
                "the URL's user:password and an Authorization header both set credentials; "
                "give one of them"
            )
        return {**data, "base_url": url, "headers": {**headers, "Authorization": basic}}

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        # A trailing slash goes from the path only: a query's value may end in one.
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))

    @field_validator("metrics_url", "prometheus_url")
    @classmethod
    def _stats_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        # These URLs are stored and shown as they are: a credential in one would be in clear.
        if "@" in parts.netloc or redact_url(text) != text:
            raise ValueError(
                "must not carry credentials (user:password or a token parameter); "
                "InferDeck reads statistics without them"
            )
        return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))

    @field_validator("prometheus_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip()
        if not (text.startswith("{") and text.endswith("}")) or "\n" in text:
            raise ValueError('must be a label selector in braces, such as {job="inferdeck"}')
        return text

    @model_validator(mode="after")
    def _prometheus_pair(self) -> Target:
        if (self.prometheus_url is None) != (self.prometheus_selector is None):
            raise ValueError(
                "a Prometheus server needs both its URL and a label selector, "
                'such as {job="inferdeck"}'
            )
        return self

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or any(c in name for c in " \t\r\n:"):
                raise ValueError(f"bad header name {name!r}")
        return value

    def redacted_headers(self) -> dict[str, str]:
        return redact_headers(self.headers)

    def redacted_url(self) -> str:
        """The base URL as stored and shown: credential query values as `***`."""
        return redact_url(self.base_url)

    def secret_values(self) -> list[str]:
        """Every credential value this target holds (for scrubbing free text such as an
        exception's message)."""
        values = [v for k, v in self.headers.items() if self.redacted_headers()[k] == REDACTED]
        shown = urlsplit(self.redacted_url()).query.split("&")
        real = urlsplit(self.base_url).query.split("&")
        values += [r.partition("=")[2] for r, s in zip(real, shown, strict=False) if r != s]
        return values

    def url(self, path: str) -> str:
        """The URL of `path` on this target; the base URL's query (credentials included) is
        kept after the path, where a server reads it."""
        if not path:
            return self.base_url
        parts = urlsplit(self.base_url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path + path, parts.query, ""))

    def __repr_args__(self) -> Any:
        # A repr ends up in logs and tracebacks: the redacted forms only.
        for key, value in super().__repr_args__():
            if key == "base_url":
                yield key, self.redacted_url()
            elif key == "headers":
                yield key, self.redacted_headers()
            else:
                yield key, value


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
