"""The exported graph as a plain function (`engine.models.lean`): used for the built-in models,
exactly equal to the exported module, and refused for graphs it does not fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from engine.models import ModelRegistry, builtin_models_dir
from engine.models.lean import lean_forward


@pytest.mark.parametrize("name", ["iris", "digits", "langid"])
def test_the_builtin_models_run_the_lean_graph_with_the_exported_results(name: str) -> None:
    registry = ModelRegistry.discover()
    model = registry.get(name)
    assert model is not None
    model.load()
    assert not isinstance(model._module, torch.nn.Module)  # the bound forward, not the module
    program = torch.export.load(str(model.folder / model.manifest.artifact))
    exported = program.module()
    batch = torch.from_numpy(model._probe_rows(17))  # floats, or token ids for a text model
    with torch.inference_mode():
        assert model._module is not None
        assert torch.equal(model._module(batch), exported(batch))
    # Exported for 1..65,536 rows: the guard call is dropped, the bounds checked in Python.
    assert model._rows == (1, 65536)
    assert "_guards_fn" not in model._module.__self__.code  # type: ignore[attr-defined]
    guarded = lean_forward(exported)
    assert guarded is not None
    assert "_guards_fn" in guarded.__self__.code  # type: ignore[attr-defined]


def test_a_batch_outside_the_exported_bounds_is_refused_by_the_exports_guard(
    tmp_path: Path,
) -> None:
    """A program exported for at most 8 rows: 5 run on the lean graph, 20 reach the exported
    module, whose guard refuses them (without it, the graph would just run them)."""
    folder = tmp_path / "small-iris"
    shutil.copytree(builtin_models_dir() / "iris", folder)
    manifest = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    (folder / "model.json").write_text(json.dumps({**manifest, "name": "small-iris"}))
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        torch.nn.Linear(4, 3), (torch.zeros(2, 4),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(folder / "model.pt2"))
    model = ModelRegistry.discover(tmp_path).get("small-iris")
    assert model is not None
    model.load()
    assert model._rows == (1, 8)
    assert model.predict_batch([[5.0, 3.0, 1.5, 0.2]] * 5).shape == (5, 3)
    with pytest.raises(Exception, match=r"(?i)guard"):
        model.predict_batch([[5.0, 3.0, 1.5, 0.2]] * 20)


class _FixedBatch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(0) + x.shape[0]  # the batch size is baked into the graph


def test_a_graph_exported_for_one_batch_size_still_refuses_the_others() -> None:
    """Without the guard, a program exported for 3 rows returned wrong numbers for 5 rows."""
    exported = torch.export.export(_FixedBatch(), (torch.zeros(3, 2),)).module()
    lean = lean_forward(exported)
    assert lean is not None
    assert torch.equal(lean(torch.ones(3, 2)), exported(torch.ones(3, 2)))
    with pytest.raises(Exception, match=r"(?i)guard"):
        lean(torch.ones(5, 2))


class _TwoOut(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + 1, x * 2


class _TwoIn(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y


def test_graphs_with_other_than_one_tensor_in_and_one_out_are_left_alone(tmp_path: Path) -> None:
    x = torch.zeros(2, 3)
    two_out = torch.export.export(_TwoOut(), (x,)).module()
    two_in = torch.export.export(_TwoIn(), (x, x)).module()
    assert lean_forward(two_out) is None
    assert lean_forward(two_in) is None
