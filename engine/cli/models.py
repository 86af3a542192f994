"""`inferdeck models list`: the models this installation can run."""

from __future__ import annotations

import argparse

from engine.cli.common import EXIT_OK, SubParsers, emit_json, say, warn
from engine.models import ModelRegistry


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("models", help="list available models")
    models_sub = p.add_subparsers(dest="models_command", required=True, metavar="list")
    lst = models_sub.add_parser("list", help="built-in and user models")
    lst.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    registry = ModelRegistry.discover()
    models = [registry.models[name] for name in registry.names()]
    if args.json:
        emit_json(
            {
                "models": [
                    {
                        "name": m.name,
                        "version": m.version,
                        "task": m.manifest.task,
                        "inputs": [spec.name for spec in m.manifest.inputs],
                        "labels": m.labels,
                        "folder": str(m.folder),
                        "input_schema": m.inputs.model_json_schema(),
                    }
                    for m in models
                ],
                "problems": registry.problems,
            }
        )
        return EXIT_OK
    for m in models:
        fields = ", ".join(spec.name for spec in m.manifest.inputs)
        say(f"{m.name:10} v{m.version:4} {m.manifest.task:24} inputs: {fields}")
        if m.manifest.description:
            say(f"{'':16}{m.manifest.description}")
    for problem in registry.problems:
        warn(f"skipped {problem}")
    return EXIT_OK
