"""`inferdeck targets add|edit|list|show|remove`: the remote endpoints an operator has saved.

Settings go to the database; a bearer token (`--token-stdin`, never an argument: arguments end
up in shell history and process lists) and every other credential (headers, query parameters and
user info of the URL, by the rule in `engine.remote.credentials`) go to the token store.
Everything printed shows credentials as `***` and never a token.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from engine.cli.common import (
    EXIT_OK,
    CommandError,
    SubParsers,
    database,
    db_path,
    emit_json,
    parse_headers,
    say,
    warn,
)
from engine.remote.credentials import REDACTED, pop_user_info
from engine.remote.secrets import TokenStore
from engine.remote.target_store import (
    KEEP,
    StoredTarget,
    TargetError,
    TargetStore,
    make_target,
)
from engine.remote.targets import PROTOCOLS, Target


def add_target_options(p: argparse.ArgumentParser) -> None:
    """The options `targets add` and `probe` share."""
    p.add_argument("--protocol", choices=PROTOCOLS, help="inferdeck (default), oip or json")
    p.add_argument("--model", help="the model whose readiness to check")
    p.add_argument("--header", action="append", metavar="K:V", help="a header to send (repeatable)")
    p.add_argument("--timeout", type=float, metavar="S", help="request timeout in seconds")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--db", help="database file")
    add_server_stats_options(p)


def add_server_stats_options(p: argparse.ArgumentParser) -> None:
    """Where the server's own statistics come from (`targets add|edit`, `probe`, `load`)."""
    p.add_argument(
        "--metrics-url",
        metavar="URL",
        help="the server's Prometheus metrics endpoint (Triton :8002/metrics, MLServer "
        ":8082/metrics); '' forgets a saved one",
    )
    p.add_argument(
        "--prometheus",
        metavar="URL",
        help="a Prometheus server that scrapes the target's replicas (with --selector)",
    )
    p.add_argument(
        "--selector",
        metavar="SELECTOR",
        help='the label selector of the replicas in that Prometheus, e.g. {job="inferdeck"}',
    )
    p.add_argument(
        "--no-server-stats",
        action="store_true",
        help="do not look for the server's statistics (OIP statistics, /metrics) on its own",
    )


def server_stats_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The server-statistics fields of a target, only those given."""
    fields: dict[str, Any] = {}
    if args.metrics_url is not None:
        fields["metrics_url"] = args.metrics_url or None
    if args.prometheus is not None:
        fields["prometheus_url"] = args.prometheus or None
    if args.selector is not None:
        fields["prometheus_selector"] = args.selector or None
    if args.no_server_stats:
        fields["server_stats"] = False
    elif getattr(args, "server_stats", False):
        fields["server_stats"] = True
    return fields


def target_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Target fields from the shared options, only those given."""
    fields: dict[str, Any] = {}
    if args.protocol is not None:
        fields["protocol"] = args.protocol
    if args.model is not None:
        fields["model"] = args.model
    if args.header:
        fields["headers"] = parse_headers(args.header)
    if args.timeout is not None:
        fields["timeout_s"] = args.timeout
        # A connect timeout longer than the whole request's makes no sense.
        if 0 < args.timeout < 5.0:
            fields["connect_timeout_s"] = args.timeout
    if args.insecure:
        fields["verify_tls"] = False
    if getattr(args, "body_template", None) is not None:
        fields["body_template"] = args.body_template
    return fields | server_stats_fields(args)


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("targets", help="add, edit, list, show or remove remote targets")
    t_sub = p.add_subparsers(
        dest="targets_command", required=True, metavar="add|edit|list|show|remove"
    )
    add = t_sub.add_parser("add", help="save a target")
    add.add_argument("name", metavar="NAME")
    add.add_argument("url", metavar="URL")
    edit = t_sub.add_parser("edit", help="change a saved target (only the options given)")
    edit.add_argument("name", metavar="NAME")
    edit.add_argument("--url", help="a new base URL")
    edit.add_argument("--verify-tls", action="store_true", help="verify TLS certificates again")
    edit.add_argument("--clear-token", action="store_true", help="forget the bearer token")
    edit.add_argument(
        "--server-stats",
        action="store_true",
        help="look for the server's statistics on its own again (after --no-server-stats)",
    )
    for sp in (add, edit):
        add_target_options(sp)
        sp.add_argument(
            "--token-stdin", action="store_true", help="read a bearer token from standard input"
        )
        sp.add_argument(
            "--body-template",
            metavar="JSON",
            help="json protocol: the request body, {{payload}} standing for the payload",
        )
    lst = t_sub.add_parser("list", help="saved targets")
    show = t_sub.add_parser("show", help="one target's settings")
    show.add_argument("name", metavar="NAME")
    remove = t_sub.add_parser("remove", help="forget a target, its secrets and probe history")
    remove.add_argument("name", metavar="NAME")
    for sp in (lst, show, remove):
        sp.add_argument("--db", help="database file")
    for sp in (lst, show):
        sp.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def target_dict(found: StoredTarget, tokens: TokenStore) -> dict[str, Any]:
    """A target as any output shows it: credentials redacted, no token."""
    t = found.target
    missing_headers = [k for k in found.missing_secrets if k not in _url_names(found)]
    return {
        **t.model_dump(exclude={"headers", "base_url"}),
        "base_url": t.redacted_url(),
        "headers": t.redacted_headers() | dict.fromkeys(missing_headers, REDACTED),
        "token": REDACTED if found.has_token else None,
        "secrets_in": tokens.where(),
        "missing_secrets": list(found.missing_secrets),
        "created_us": found.created_us,
        "updated_us": found.updated_us,
    }


def _warn_plaintext(found: StoredTarget, tokens: TokenStore) -> None:
    """Say where an older version left credentials in the database, and how to move them."""
    if not found.plaintext_secrets:
        return
    name = found.target.name
    where = (
        "the system keyring"
        if tokens.where() == "keyring"
        else "this process's memory (no usable keyring here: they would be gone when it ends)"
    )
    warn(
        f"inferdeck: target {name} has credentials in the database in clear, saved by an older "
        f"version ({', '.join(found.plaintext_secrets)}); `inferdeck targets edit {name}` "
        f"moves them to {where}"
    )


def _url_names(found: StoredTarget) -> list[str]:
    """The missing secrets that are the URL's (`?token`), not headers."""
    return [k for k in found.missing_secrets if k.startswith("?")]


def server_stats_text(t: Target) -> str:
    """Where the target's server-side statistics come from, in words."""
    parts = []
    if t.server_stats:
        parts.append("OIP statistics and /metrics when offered")
    if t.metrics_url:
        parts.append(f"metrics {t.metrics_url}")
    if t.prometheus_url:
        parts.append(f"Prometheus {t.prometheus_url} {t.prometheus_selector}")
    return "; ".join(parts) or "off"


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6).strftime("%Y-%m-%d %H:%M:%S")


def _read_token() -> str:
    token = sys.stdin.readline().strip()
    if not token:
        raise CommandError("--token-stdin: no token on standard input")
    return token


async def run(args: argparse.Namespace) -> int:
    tokens = TokenStore()
    async with database(db_path(args.db)) as db:
        store = TargetStore(db, tokens)
        try:
            return await _run(args, store, tokens)
        except TargetError as exc:
            raise CommandError(str(exc)) from exc


async def _run(args: argparse.Namespace, store: TargetStore, tokens: TokenStore) -> int:
    command = args.targets_command
    if command == "add":
        token = _read_token() if args.token_stdin else None
        target = make_target(name=args.name, base_url=args.url, **target_fields(args))
        added = await store.add(target, token=token)
        say(f"added target {target.name} ({target.protocol}, {target.redacted_url()})")
        secrets = [k for k, v in target.redacted_headers().items() if v == REDACTED]
        secrets += [] if target.redacted_url() == target.base_url else ["url"]
        if (token or secrets) and tokens.where() == "memory":
            warn(
                "inferdeck: no usable system keyring: the token and credentials are kept "
                "only by this process and are gone when it ends"
            )
        elif added.has_token or secrets:
            say("secrets kept in the system keyring")
        return EXIT_OK
    if command == "edit":
        return await _edit(args, store)
    if command == "list":
        found_all = await store.list_all()
        for f in found_all:
            _warn_plaintext(f, tokens)
        if args.json:
            emit_json({"targets": [target_dict(f, tokens) for f in found_all]})
            return EXIT_OK
        if not found_all:
            say("no targets yet (see: inferdeck targets add)")
            return EXIT_OK
        say(f"{'NAME':20} {'PROTOCOL':9} {'MODEL':12} {'TLS':6} {'TOKEN':6} URL")
        for f in found_all:
            t = f.target
            tls = "verify" if t.verify_tls else "off"
            say(
                f"{t.name:20} {t.protocol:9} {t.model or '-':12} {tls:6} "
                f"{'yes' if f.has_token else 'no':6} {t.redacted_url()}"
            )
        return EXIT_OK
    if command == "show":
        found = await store.get(args.name)
        if found is None:
            raise CommandError(f"no target named {args.name!r} (see: inferdeck targets list)")
        detail = target_dict(found, tokens)
        _warn_plaintext(found, tokens)
        if args.json:
            emit_json(detail)
            return EXIT_OK
        t = found.target
        say(f"target {t.name}")
        say(f"  url       {detail['base_url']}")
        say(f"  protocol  {t.protocol}" + (f", model {t.model}" if t.model else ""))
        say(f"  timeouts  {t.timeout_s:g} s (connect {t.connect_timeout_s:g} s)")
        say(f"  tls       {'verified' if t.verify_tls else 'NOT verified'}")
        for key, value in detail["headers"].items():
            say(f"  header    {key}: {value}")
        say(f"  token     {'*** (' + tokens.where() + ')' if found.has_token else 'none'}")
        say(f"  server    {server_stats_text(t)}")
        if found.missing_secrets:
            warn(
                "inferdeck: secrets not available in this process: "
                + ", ".join(found.missing_secrets)
            )
        say(f"  added     {_when(found.created_us)}, changed {_when(found.updated_us)}")
        return EXIT_OK
    if not await store.remove(args.name):
        raise CommandError(f"no target named {args.name!r} (see: inferdeck targets list)")
    say(f"removed target {args.name}")
    return EXIT_OK


async def _edit(args: argparse.Namespace, store: TargetStore) -> int:
    found = await store.get(args.name)
    if found is None:
        raise CommandError(f"no target named {args.name!r} (see: inferdeck targets list)")
    given = target_fields(args)
    # New headers join the saved ones (a header given again takes its new value).
    headers = found.target.headers | given.pop("headers", {})
    if args.url and pop_user_info(args.url)[1] is not None:
        # The new URL's user info is the new Authorization; the saved one would clash with it.
        old = {k for k in found.target.headers if k.lower() == "authorization"}
        headers = {k: v for k, v in headers.items() if k not in old}
    fields = found.target.model_dump() | given | {"headers": headers}
    if args.url:
        fields["base_url"] = args.url
    if args.verify_tls:
        fields["verify_tls"] = True
    token: str | object | None = KEEP
    if args.token_stdin:
        token = _read_token()
    elif args.clear_token:
        token = None
    target = make_target(**fields)
    await store.update(target, token=token)  # type: ignore[arg-type]
    say(f"updated target {target.name} ({target.protocol}, {target.redacted_url()})")
    return EXIT_OK
