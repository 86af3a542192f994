"""Model folders: a manifest (`model.json`) plus a `torch.export` archive (`model.pt2`)."""

from engine.models.check import FolderCheck, check_folder
from engine.models.manifest import FieldSpec, Manifest, ManifestError, read_manifest
from engine.models.registry import ModelRegistry, builtin_models_dir, default_models_dir

__all__ = [
    "FieldSpec",
    "FolderCheck",
    "Manifest",
    "ManifestError",
    "ModelRegistry",
    "builtin_models_dir",
    "check_folder",
    "default_models_dir",
    "read_manifest",
]
