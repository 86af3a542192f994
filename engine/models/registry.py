"""The model registry: the built-in models (package data in `engine/models/builtin/`) plus user
models folders."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.models.manifest import ManifestError, read_manifest
from engine.models.runtime import LoadedModel


def builtin_models_dir() -> Path:
    """The built-in models' folder, inside the installed package (a wheel ships it as data)."""
    return Path(__file__).resolve().parent / "builtin"


@dataclass
class ModelRegistry:
    """The models by name (built-in plus user folders); start-up builds it, the engine and the
    commands look models up in it."""

    models: dict[str, LoadedModel] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # user folders that failed to load

    @classmethod
    def discover(cls, *extra_dirs: Path) -> ModelRegistry:
        """Read every model folder's manifest; artifacts load later (`load_all` or first use)."""
        registry = cls()
        dirs = [builtin_models_dir(), *extra_dirs]
        env_dir = os.environ.get("INFERDECK_MODELS_DIR")
        if env_dir:
            dirs.append(Path(env_dir))
        for root in dirs:
            registry.add_folder_tree(root)
        return registry

    def add_folder_tree(self, root: Path) -> None:
        if not root.is_dir():
            return
        for folder in sorted(p for p in root.iterdir() if (p / "model.json").is_file()):
            try:
                manifest = read_manifest(folder)
            except ManifestError as exc:
                self.problems.append(str(exc))
                continue
            if not (folder / manifest.artifact).is_file():
                self.problems.append(f"{folder}: missing {manifest.artifact}")
                continue
            self.models.setdefault(manifest.name, LoadedModel.from_manifest(manifest, folder))

    def get(self, name: str) -> LoadedModel | None:
        return self.models.get(name)

    def names(self) -> list[str]:
        return sorted(self.models)

    def default_for(self, task: str) -> LoadedModel | None:
        return next((m for m in self.models.values() if m.manifest.task == task), None)

    def load_all(self) -> None:
        """Load every artifact; a model that fails moves to `problems` instead of stopping
        the others."""
        for name, model in list(self.models.items()):
            try:
                model.load()
            except Exception as exc:
                self.problems.append(f"{model.folder}: cannot load: {type(exc).__name__}: {exc}")
                del self.models[name]
