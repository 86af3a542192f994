"""Which parts of a target are credentials, and the redacted form every store and display uses.

The rule (one rule for headers, URL query parameters and URL user info; no list of known names):

- URL user info (`http://user:pass@host`, `http://token@host`) is always a credential.
- A header or query parameter is a credential when its name, lowercased, contains one of
  `CREDENTIAL_WORDS` (`auth`, `token`, `key`, `secret`, `pass`, `session`, `signature`,
  `credential`, `cookie`, `bearer`, `jwt`): `Authorization`, `Proxy-Authorization`, `Cookie`,
  `X-Auth-Token`, `Private-Token`, `X-Goog-Api-Key`, `?access_token=`, `?api_key=`...; or when one
  of the name's parts (split at `-`, `_`, `.`) is one of `CREDENTIAL_PARTS` (`sig` as in Azure
  SAS URLs, `pwd`, `sid`).
- A header is also a credential when its value starts with an HTTP auth scheme (`Bearer `,
  `Basic `, `Digest `...), whatever its name.

What the rule does not judge: the URL's path (a token as a path segment is not recognised; give
it as a header or a parameter) and the request body template.

The rule errs towards hiding: a header such as `Idempotency-Key` is hidden too, which costs the
operator a `***` in a listing, whereas missing one leaks a secret into SQLite and exports.

What happens to a credential (`engine.remote.target_store`, `engine.remote.secrets`): its value
is kept in the system keyring, or only in memory when there is none, exactly as a bearer token;
SQLite, run configs, request rows, logs, exports and every view get the form made here, where
each value is `REDACTED`. User info never even stays in the URL: `Target` turns it into the
`Authorization: Basic` header that HTTP clients would send for it, so it is held, stored and
shown as that header.

Pure functions over strings; no I/O and no third-party imports (the app imports this at start-up).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = "***"

CREDENTIAL_WORDS = (
    "auth",
    "token",
    "key",
    "secret",
    "pass",
    "session",
    "signature",
    "credential",
    "cookie",
    "bearer",
    "jwt",
)
CREDENTIAL_PARTS = frozenset({"sig", "pwd", "sid"})
_AUTH_SCHEME = re.compile(r"^\s*(bearer|basic|digest|negotiate|ntlm|token|apikey)\s+\S", re.I)
_PARTS = re.compile(r"[-_.\s]+")


def is_credential_name(name: str) -> bool:
    """Whether a header or query parameter of this name carries a credential (the module's rule)."""
    lowered = name.strip().lower()
    if any(word in lowered for word in CREDENTIAL_WORDS):
        return True
    return any(part in CREDENTIAL_PARTS for part in _PARTS.split(lowered))


def is_credential_header(name: str, value: str) -> bool:
    return is_credential_name(name) or _AUTH_SCHEME.match(value) is not None


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers with every credential's value replaced by `REDACTED`."""
    return {k: (REDACTED if is_credential_header(k, v) else v) for k, v in headers.items()}


def _query_pairs(query: str) -> list[tuple[str, str | None]]:
    """`a=1&b&c=` as raw (undecoded) pairs; None marks a parameter with no `=`."""
    pairs: list[tuple[str, str | None]] = []
    for item in query.split("&"):
        if not item:
            continue
        name, eq, value = item.partition("=")
        pairs.append((name, value if eq else None))
    return pairs


def _join_query(pairs: Iterable[tuple[str, str | None]]) -> str:
    return "&".join(name if value is None else f"{name}={value}" for name, value in pairs)


def _secret_param(raw_name: str) -> bool:
    return is_credential_name(unquote_plus(raw_name))


def url_secret_names(url: str) -> list[str]:
    """The URL's credentials by name: `user info` and each secret query parameter's name."""
    parts = urlsplit(url)
    names = ["user info"] if "@" in parts.netloc else []
    names += [
        f"?{unquote_plus(n)}"
        for n, v in _query_pairs(parts.query)
        if v is not None and _secret_param(n)
    ]
    return names


def redact_url(url: str) -> str:
    """The URL as stored and shown: user info as `***@`, each credential parameter's value
    `***`; everything else exactly as given (no re-encoding). A fragment is dropped."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = _join_query(
        (n, REDACTED if v is not None and _secret_param(n) else v)
        for n, v in _query_pairs(parts.query)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def drop_url_secrets(url: str) -> str:
    """The URL without user info and without its credential parameters: what can be sent when
    the secrets' values are not available (sending `***` would be wrong twice over)."""
    parts = urlsplit(url)
    query = _join_query((n, v) for n, v in _query_pairs(parts.query) if not _secret_param(n))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, ""))


def pop_user_info(url: str) -> tuple[str, str | None]:
    """The URL without its user info, and that user info as an `Authorization: Basic` value
    (None when there was none)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    if not userinfo:  # `http://@host`: nothing to send
        return bare, None
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    return bare, "Basic " + base64.b64encode(pair).decode("ascii")


def host_name(url: str) -> str:
    """A name for an unsaved target made from its URL: `host:port`, never the user info."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a bad port; the URL's own check reports it
        return "target"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return (f"{host}:{port}" if port is not None else host)[:64] or "target"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret value replaced: for messages that may echo a
    URL or a header (an exception's text), where the structure is no longer known."""
    for secret in sorted({s for s in secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
