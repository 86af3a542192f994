"""What a load run is asked to do, and how `inferdeck gui` reads it from its flags.

Qt-free on purpose: the `inferdeck` command parses every sub-command's flags before anything
imports Qt (headless commands start fast), and the app, the Load panel and the tests share these
plain types.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import orjson
from pydantic import ValidationError

from engine.remote.credentials import host_name, redact_url
from engine.remote.plan import LoadPlan
from engine.remote.targets import PROTOCOLS, Target, describe_validation

TOKEN_ENV = "INFERDECK_TOKEN"  # a bearer token for `inferdeck load` and `gui --autostart`
DEFAULT_DURATION_S = 10.0

PayloadKind = Literal["example", "form", "file", "history"]
# `--target` without `--autostart` fills the Load tab; its plan is the tab's defaults.
PREFILL_PLAN = LoadPlan(rate=100.0, duration_s=DEFAULT_DURATION_S)


@dataclass(frozen=True)
class PayloadChoice:
    """Where a run's payloads come from, as the Load panel or `gui --autostart` says it."""

    kind: PayloadKind = "example"
    text: str = ""  # "form": a JSON object; "file": its path


@dataclass(frozen=True)
class LoadRequest:
    """Everything a run needs, as the panel or the command line gives it."""

    target: Target
    plan: LoadPlan
    payload: PayloadChoice = PayloadChoice()
    token: str | None = None


class LoadStartError(ValueError):
    """The run cannot start (bad flags, bad payload, unreachable target): one line why, and
    the form's field it is about (`url`, `model`, `payload`), or None for the run as a whole."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


EXAMPLE_URL = "http://127.0.0.1:8000"


def url_problem(url: str) -> str | None:
    """What is wrong with a typed target URL, in the words of someone typing it; None if fine."""
    text = url.strip()
    if not text:
        return f"Type the target's URL, for example {EXAMPLE_URL}"
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        if "port" in str(exc).lower():
            return "The port must be a number from 1 to 65535"
        return f"This is not a URL: write it like {EXAMPLE_URL}"
    if parts.scheme not in ("http", "https"):
        return "The URL must start with http:// or https://"
    if not parts.hostname:
        return f"The URL needs a host after {parts.scheme}://, for example {EXAMPLE_URL}"
    if port == 0:
        return "The port must be a number from 1 to 65535"
    return None


def payload_problem(choice: PayloadChoice, model: str | None) -> str | None:
    """What is wrong with the chosen payloads, found without reading a file; None if fine."""
    if choice.kind == "form":
        try:
            value = orjson.loads(choice.text or "{}")
        except orjson.JSONDecodeError as exc:
            return f"The payload is not valid JSON ({exc})"
        if not isinstance(value, dict):
            return 'The payload must be one JSON object, like {"sepal_length": 5.1}'
    elif choice.kind == "file" and not choice.text.strip():
        return "Choose a file of rows (JSON, JSONL or CSV)"
    elif choice.kind == "history" and not model:
        return "Replaying stored inputs needs the target's model name"
    return None


def add_gui_arguments(gui: argparse.ArgumentParser) -> None:
    """The `gui` sub-command's load flags (DESIGN.md, Command line). Combinations are checked
    by `load_from_args`, so a bad one ends as one line, not argparse's usage block."""
    gui.add_argument("--target", metavar="URL", help="a target's base URL for the Load tab")
    gui.add_argument("--protocol", choices=PROTOCOLS, help="inferdeck (default), oip or json")
    gui.add_argument("--model", help="model name (inferdeck and oip)")
    gui.add_argument("--autostart", action="store_true", help="start the load at once")
    gui.add_argument("--rate", type=float, metavar="R", help="open model: requests per second")
    gui.add_argument("--concurrency", type=int, metavar="C", help="closed model: users")
    gui.add_argument(
        "--duration", type=float, metavar="S", help=f"seconds (default {DEFAULT_DURATION_S:g})"
    )
    gui.add_argument("--requests", type=int, metavar="N", help="stop after N requests")
    gui.add_argument("--ramp", type=float, default=0.0, metavar="S", help="ramp up over S")
    gui.add_argument("--max-in-flight", type=int, default=1000, metavar="N")
    gui.add_argument("--payload", metavar="FILE", help="JSON, JSONL or CSV rows, cycled")
    gui.add_argument("--data", metavar="JSON", help="one payload as a JSON object")
    gui.add_argument("--json", action="store_true", help="end with the run's JSON summary line")


def plan_from_args(args: argparse.Namespace) -> LoadPlan:
    """The plan the traffic options describe (`load` and `gui --autostart` share them);
    raises ValueError naming what is wrong."""
    duration = args.duration
    if duration is None and args.requests is None:
        duration = DEFAULT_DURATION_S
    return LoadPlan(
        rate=args.rate,
        concurrency=args.concurrency,
        duration_s=duration,
        requests=args.requests,
        ramp_s=args.ramp,
        max_in_flight=args.max_in_flight,
    )


def load_from_args(args: argparse.Namespace) -> tuple[LoadRequest | None, bool]:
    """(the run the flags describe, whether to start it at once); (None, False) without
    `--target`. `LoadStartError` for a bad combination."""
    given = [
        flag
        for flag, value in (
            ("--rate", args.rate),
            ("--concurrency", args.concurrency),
            ("--duration", args.duration),
            ("--requests", args.requests),
            ("--payload", args.payload),
            ("--data", args.data),
            ("--json", args.json or None),
        )
        if value is not None
    ]
    if args.autoquit is not None and not args.autoquit > 0:
        raise LoadStartError("--autoquit must be above 0")
    if not args.autostart:
        if given:
            raise LoadStartError(f"{given[0]} needs --autostart")
        if args.target is None:
            if args.protocol or args.model:
                raise LoadStartError("--protocol and --model need --target")
            return None, False
        return LoadRequest(_target(args), PREFILL_PLAN), False
    if args.target is None:
        raise LoadStartError("--autostart needs --target URL")
    if (args.rate is None) == (args.concurrency is None):
        raise LoadStartError("--autostart needs one of --rate R or --concurrency C")
    if args.payload is not None and args.data is not None:
        raise LoadStartError("give --payload or --data, not both")
    try:
        plan = plan_from_args(args)
    except ValueError as exc:
        raise LoadStartError(str(exc)) from None
    if args.payload is not None:
        payload = PayloadChoice("file", args.payload)
    elif args.data is not None:
        payload = PayloadChoice("form", args.data)
    else:
        payload = PayloadChoice()
    target = _target(args)
    return LoadRequest(target, plan, payload, token=os.environ.get(TOKEN_ENV) or None), True


def _target(args: argparse.Namespace) -> Target:
    try:
        return Target(
            name=host_name(args.target),
            base_url=args.target,
            protocol=args.protocol or "inferdeck",
            model=args.model,
        )
    except ValidationError as exc:
        url = redact_url(args.target)
        raise LoadStartError(f"--target {url}: {describe_validation(exc)}") from None
