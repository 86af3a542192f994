"""The model registry: the built-in models (package data in `engine/models/builtin/`) plus user
models folders.

Where models are found, in order (the first folder with a name keeps it):
1. the built-ins, which a user model can never replace;
2. folders a caller names (`serve --models-dir` passes its own);
3. `INFERDECK_MODELS_DIR`, when set;
4. the user's data folder, `<platformdirs user data>/inferdeck/models`, where `models add` puts
   a model by default.
A folder that cannot be used is skipped with the lines `models check` prints for it
(`engine/models/check.py`), so every front door says the same thing about it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from engine.models.check import FolderCheck, examine, open_folder
from engine.models.runtime import LoadedModel

ENV_MODELS_DIR = "INFERDECK_MODELS_DIR"


def builtin_models_dir() -> Path:
    """The built-in models' folder, inside the installed package (a wheel ships it as data)."""
    return Path(__file__).resolve().parent / "builtin"


def user_data_models_dir() -> Path:
    """The models folder in the user's data folder (beside the default database)."""
    return Path(platformdirs.user_data_dir("inferdeck", appauthor=False)) / "models"


def default_models_dir() -> Path:
    """Where `models add` and `models remove` work when not told: `INFERDECK_MODELS_DIR`, else
    the user's data folder."""
    env = os.environ.get(ENV_MODELS_DIR)
    return Path(env) if env else user_data_models_dir()


def user_models_dirs() -> list[Path]:
    """Every folder of user models discovery reads without being told: `INFERDECK_MODELS_DIR`
    (when set) and the user's data folder."""
    return _distinct([default_models_dir(), user_data_models_dir()])


def is_builtin(folder: Path) -> bool:
    return folder.resolve().parent == builtin_models_dir()


def _distinct(dirs: list[Path]) -> list[Path]:
    """`dirs` without repeats of one folder (`serve --models-dir` also sets the environment)."""
    seen: set[Path] = set()
    kept = []
    for folder in dirs:
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            kept.append(folder)
    return kept


def model_folders(root: Path) -> list[Path]:
    """The model folders in `root`: subfolders with a `model.json`, by name. A hidden one is
    skipped: `models add` writes a model under a hidden name before moving it in."""
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if not p.name.startswith(".") and (p / "model.json").is_file()
    )


@dataclass
class ModelRegistry:
    """The models by name (built-in plus user folders); start-up builds it, the engine and the
    commands look models up in it."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # `{folder}: {problem}`, a line each
    broken: list[FolderCheck] = field(default_factory=list)  # the folders those are about

    @classmethod
    def discover(cls, *extra_dirs: Path) -> ModelRegistry:
        """Read every model folder's manifest; artifacts load later (`load_all` or first use)."""
        registry = cls()
        for root in _distinct([builtin_models_dir(), *extra_dirs, *user_models_dirs()]):
            registry.add_folder_tree(root)
        return registry

    def add_folder_tree(self, root: Path) -> None:
        for folder in model_folders(root):
            check = open_folder(folder)
            if check.ok and check.model is not None:
                taken = self.models.get(check.model.name)
                if taken is None:
                    self.models[check.model.name] = check.model
                    continue
                check.problems.append(f"name {check.model.name!r} is taken by {taken.folder}")
            self._skip(check)

    def get(self, name: str) -> LoadedModel | None:
        return self.models.get(name)

    def names(self) -> list[str]:
        return sorted(self.models)

    def default_for(self, task: str) -> LoadedModel | None:
        return next((m for m in self.models.values() if m.manifest.task == task), None)

    def load_all(self) -> None:
        """Load every artifact and run its stored examples (`check.examine`); a model that
        fails moves to `problems` instead of stopping the others."""
        for name, model in list(self.models.items()):
            problems, examples = examine(model)
            if problems:
                del self.models[name]
                self._skip(FolderCheck(model.folder, model.manifest, model, problems, examples))

    def _skip(self, check: FolderCheck) -> None:
        self.broken.append(check)
        self.problems.extend(check.lines())
