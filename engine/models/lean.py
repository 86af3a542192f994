"""A `torch.export` program's graph as a plain function, for the executor's hot call.

`ExportedProgram.module()` wraps the graph for any caller: `nn.Module.__call__` and its hooks,
pytree flattening of the arguments and unflattening of the result, and a guard function that
checks the input's shape against the export's constraints. For a small model that wrapping
is most of the call (the iris MLP: 146 µs a call, of which its three ops are 22 µs and the
guard 15–35 µs). The engine always passes one tensor it built itself, so the module call and
the pytree layers are not needed. The guard is needed only for the batch size: a graph
exported for a fixed batch, or a bounded one, computes wrong answers for other sizes without
it, and the engine's tensors have every other dimension fixed (`LoadedModel.load` checks the
copy against the exported module on a probe batch, which the guard refuses if they differ).
So when the first dimension is dynamic, `batch_range` gives its bounds, `lean_forward` drops
the guard call, and `LoadedModel.predict_batch` checks the batch against those bounds (two
comparisons), handing a batch outside them to the exported module, whose guard refuses it.
Otherwise the copy keeps the guard call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_GUARDS = "_guards_fn"


def batch_range(program: Any, module: Any) -> tuple[int, int] | None:
    """The batch sizes `program` (its `module()` given too) was exported for, `(lower,
    upper)`, when its one input's first dimension is dynamic and its others fixed; None
    otherwise."""
    import torch

    inputs = [node for node in module.graph.nodes if node.op == "placeholder"]
    value = inputs[0].meta.get("val") if len(inputs) == 1 else None
    if value is None or not value.shape:
        return None
    first, *rest = value.shape
    if not isinstance(first, torch.SymInt) or not all(isinstance(d, int) for d in rest):
        return None
    bounds = program.range_constraints.get(first.node.expr)
    if bounds is None:
        return None
    upper = bounds.upper
    # An unbounded dimension's upper bound is sympy's infinity, not an int.
    return int(bounds.lower), int(upper) if upper.is_finite else 2**63 - 1


def lean_forward(module: Any, keep_guard: bool = True) -> Callable[[Any], Any] | None:
    """`module.forward` without the call and pytree layers, taking the one input tensor and
    returning the one output tensor; its guard call too unless `keep_guard` is False (then
    the caller checks the batch size, see `batch_range`). None when the graph is not of that
    shape (then the caller keeps `module`)."""
    import torch.fx

    source: torch.fx.Graph = module.graph
    if sum(node.op == "placeholder" for node in source.nodes) != 1:
        return None
    graph = torch.fx.Graph()  # a fresh graph: fx's default code generation, no pytree specs
    values: dict[torch.fx.Node, torch.fx.Node] = {}
    result = graph.graph_copy(source, values)
    if isinstance(result, (tuple, list)):
        if len(result) != 1:
            return None
        result = result[0]
    graph.output(result)
    if not keep_guard:
        for node in list(graph.nodes):
            if node.op == "call_module" and node.target == _GUARDS and not node.users:
                graph.erase_node(node)
    lean = torch.fx.GraphModule(module, graph)
    # The bound `forward`, not the module: `nn.Module.__call__` is the costliest layer.
    forward: Callable[[Any], Any] = lean.forward
    return forward
