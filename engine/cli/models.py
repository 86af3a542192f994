"""`inferdeck models list|add|check|remove`: the models this installation can run.

The work lives in `engine/models/` (`packaging` adds, `check` checks, the registry finds); this
module turns arguments into those calls and their results into lines, JSON and exit codes:
0 fine, 1 a model that could not be added or a check that found problems, 2 a usage error (no
such model, an unreadable source).
"""

from __future__ import annotations

import argparse
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from engine.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    CommandError,
    SubParsers,
    emit_json,
    say,
    warn,
)
from engine.models import FolderCheck, Manifest, ModelRegistry, check_folder, default_models_dir
from engine.models.registry import builtin_models_dir, is_builtin, user_models_dirs
from engine.models.runtime import LoadedModel


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("models", help="list, add, check or remove models")
    models_sub = p.add_subparsers(
        dest="models_command", required=True, metavar="list|add|check|remove"
    )
    lst = models_sub.add_parser("list", help="built-in and user models, each with its check")
    lst.add_argument("--json", action="store_true", help="print one JSON object")

    add = models_sub.add_parser(
        "add",
        help="add a model from a folder (model.json + model.pt2) or a Python file",
        description="Add a model: a folder with model.json and model.pt2, or a Python file "
        "defining build() (a torch.nn.Module), MANIFEST (the manifest's fields) and EXAMPLES "
        "(input dicts); see assets/examples/.",
    )
    add.add_argument("source", metavar="SOURCE", help="a model folder or a .py file")
    add.add_argument("--name", help="the model's name (instead of the manifest's)")
    add.add_argument("--version", help="the model's version (instead of the manifest's)")
    add.add_argument(
        "--models-dir",
        metavar="DIR",
        help="where to add it (default: INFERDECK_MODELS_DIR, else the user's data folder)",
    )
    add.add_argument("--json", action="store_true", help="print one JSON object")

    check = models_sub.add_parser(
        "check", help="load a model as the engine does, run its examples, name every problem"
    )
    check.add_argument("target", metavar="NAME|DIR", help="a model's name or its folder")
    check.add_argument("--json", action="store_true", help="print one JSON object")

    remove = models_sub.add_parser("remove", help="delete a user model's folder")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument(
        "--models-dir",
        metavar="DIR",
        help="where it is (default: INFERDECK_MODELS_DIR and the user's data folder)",
    )
    p.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    commands = {"list": _list, "add": _add, "check": _check, "remove": _remove}
    return commands[args.models_command](args)


# list --------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    registry = ModelRegistry.discover()
    # Every model loaded and its examples run: its check status is what serving it would find.
    registry.load_all()
    models = [registry.models[name] for name in registry.names()]
    if args.json:
        emit_json(
            {
                "models": [
                    *(_entry(m.folder, m.manifest, m, "ok") for m in models),
                    *(_entry(c.folder, c.manifest, c.model, c.problems) for c in registry.broken),
                ],
                "problems": registry.problems,
            }
        )
        return EXIT_OK
    for m in models:
        _describe(m.name, m.folder, m)
        say("  check: ok")
    for broken in registry.broken:
        _describe(broken.name, broken.folder, broken.model)
        for problem in broken.problems:
            say(f"  problem: {problem}")
    return EXIT_OK


def _entry(
    folder: Path, manifest: Manifest | None, model: LoadedModel | None, check: str | list[str]
) -> dict[str, Any]:
    """A model's `--json` entry; a folder that cannot be used has one too, with what of its
    manifest could be read."""
    return {
        "name": manifest.name if manifest is not None else folder.name,
        "version": manifest.version if manifest is not None else None,
        "task": manifest.task if manifest is not None else None,
        "description": manifest.description if manifest is not None else "",
        "inputs": [spec.name for spec in manifest.inputs] if manifest is not None else [],
        "labels": manifest.labels if manifest is not None else [],
        "outputs": [out.name for out in manifest.outputs] if manifest is not None else [],
        "metrics": manifest.metrics if manifest is not None else {},
        "folder": str(folder),
        "source": _source(folder),
        "input_schema": model.inputs.model_json_schema() if model is not None else None,
        "check": check,
    }


def _source(folder: Path) -> str:
    return "built-in" if is_builtin(folder) else "user"


def _describe(name: str, folder: Path, model: LoadedModel | None) -> None:
    if model is None:
        say(f"{name}  (unreadable manifest)  {_source(folder)}")
        say(f"  folder: {folder}")
        return
    manifest = model.manifest
    say(f"{name}  v{manifest.version}  {manifest.task}  {_source(folder)}")
    if manifest.description:
        say(f"  {manifest.description}")
    say(f"  inputs: {', '.join(spec.name for spec in manifest.inputs)}")
    kind = "labels" if manifest.is_classifier else "outputs"
    say(f"  {kind}: {', '.join(manifest.output_names)}")
    if manifest.metrics:
        say(f"  metrics: {', '.join(f'{k} {v:g}' for k, v in manifest.metrics.items())}")
    say(f"  folder: {folder}")


# add ---------------------------------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    # Imported here: the other subcommands need none of it.
    from engine.models.packaging import PackagingError, add_model

    source = Path(args.source)
    if not source.exists():
        raise CommandError(f"{source}: no such file or folder")
    if source.is_dir() and not (source / "model.json").is_file():
        raise CommandError(f"{source}: not a model folder (no model.json)")
    if not source.is_dir() and source.suffix != ".py":
        raise CommandError(f"{source}: not a model folder or a Python file")
    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    try:
        result = add_model(source, models_dir, name=args.name, version=args.version, progress=warn)
    except PackagingError as exc:
        warn(f"inferdeck: {exc}")
        if args.json:
            emit_json({"error": str(exc)})
        return EXIT_PARTIAL
    if args.json:
        emit_json(result.summary())
        return EXIT_OK
    agreement = (
        f"exported and eager agree on {result.examples} examples "
        f"(largest difference {result.max_abs_diff:.2g})"
        if result.max_abs_diff is not None
        else f"{result.examples} examples ran"
    )
    say(f"{result.name} v{result.version} ({result.task}) in {result.folder}")
    say(f"  {agreement}; {result.seconds:.1f} s")
    return EXIT_OK


# check -------------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    check = check_folder(_model_folder(args.target))
    manifest = check.manifest
    if args.json:
        emit_json(
            {
                "name": manifest.name if manifest is not None else None,
                "folder": str(check.folder),
                "task": manifest.task if manifest is not None else None,
                "ok": check.ok,
                "problems": check.problems,
                "examples": check.examples,
            }
        )
    elif check.ok:
        say(f"{check.name}: ok, {check.examples} examples ran ({check.folder})")
    else:
        for line in check.lines():
            say(line)
    return EXIT_OK if check.ok else EXIT_PARTIAL


def _model_folder(target: str) -> Path:
    """The folder `models check` means: `target` itself when it is a folder, else the folder
    of the model of that name (a broken one too: that is what check is for)."""
    path = Path(target)
    if path.is_dir():
        if not (path / "model.json").is_file():
            raise CommandError(f"{target}: not a model folder (no model.json)")
        return path
    registry = ModelRegistry.discover()
    model = registry.get(target)
    if model is not None:
        return model.folder
    broken = _broken_named(registry.broken, target)
    if broken is not None:
        return broken.folder
    have = ", ".join(registry.names())
    raise CommandError(f"no model named {target!r} and no such folder (have: {have})")


def _broken_named(broken: list[FolderCheck], name: str) -> FolderCheck | None:
    return next((c for c in broken if name in (c.name, c.folder.name)), None)


# remove ------------------------------------------------------------------------------------


def _remove(args: argparse.Namespace) -> int:
    from engine.models.packaging import builtin_names, find_user_model

    name: str = args.name
    dirs = [Path(args.models_dir)] if args.models_dir else user_models_dirs()
    folder = next((f for d in dirs if (f := find_user_model(name, d)) is not None), None)
    if folder is None:
        if name in builtin_names():
            raise CommandError(
                f"{name!r} is a built-in model (in {builtin_models_dir()}); it cannot be removed"
            )
        raise CommandError(f"no model named {name!r} in {', '.join(map(str, dirs))}")
    # Out of sight first (discovery skips hidden folders), so no reader meets half a folder.
    hidden = folder.with_name(f".removing-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(folder, hidden)
    except OSError as exc:
        raise CommandError(f"cannot remove {folder} ({exc.strerror})") from exc
    if hidden.is_symlink():  # a linked model folder: the link goes, never what it points at
        hidden.unlink()
    else:
        shutil.rmtree(hidden, ignore_errors=True)
    say(f"removed {name} ({folder})")
    return EXIT_OK
