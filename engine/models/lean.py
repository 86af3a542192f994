"""A `torch.export` program's graph as a plain function, for the executor's hot call.

`ExportedProgram.module()` wraps the graph for any caller: `nn.Module.__call__` and its hooks,
pytree flattening of the arguments and unflattening of the result, and a guard function that
checks the input's shape against the export's constraints. For a small model that wrapping
is most of the call (the iris MLP: 146 µs a call, of which its three ops are 22 µs and the
guard 15 µs). The engine always passes one tensor it built itself, so the module call and the
pytree layers are not needed; the guard stays, since a graph exported for a fixed batch size
or a bounded one computes wrong answers for other sizes without it. `lean_forward` copies
the graph, guard call included, with fx's plain code generation, and `LoadedModel.load` keeps
it only after it agreed exactly with the exported module on a probe batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def lean_forward(module: Any) -> Callable[[Any], Any] | None:
    """`module.forward` without the call and pytree layers (its guard kept), taking the one
    input tensor and returning the one output tensor; None when the graph is not of that
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
    lean = torch.fx.GraphModule(module, graph)  # the guard call comes along (`_guards_fn`)
    # The bound `forward`, not the module: `nn.Module.__call__` is the costliest layer.
    forward: Callable[[Any], Any] = lean.forward
    return forward
