"""Wires the Models view into the app: its tab and menu, and the reload that swaps a new set of
models into the running engine and tells the views that list models.

A reload reads the models folders again (`ModelRegistry.discover`, in a worker thread: it reads
manifests and tokenizers), has the engine load and warm them in its executor and swap them in
(`Engine.replace_models`), then updates the Predict form's model list, the status bar, the side
pane and the Models table. Requests already accepted finish on the models they were accepted
with.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.models.registry import ModelRegistry
from engine.tasks import TaskOwner
from gui.models.models_view import ACTIONS, ModelsView

if TYPE_CHECKING:
    from engine.pipeline import Engine
    from gui.main_window import MainWindow


def attach_models(window: MainWindow, engine: Engine, tasks: TaskOwner) -> ModelsView:
    """Add the Models tab and menu to `window`, over `engine`'s models; the view opens its
    actions once the caller says the first load is over (`ModelsView.set_ready`)."""

    async def reload() -> ModelRegistry:
        registry = await asyncio.to_thread(ModelRegistry.discover)
        await engine.replace_models(registry)
        models = [registry.models[name] for name in registry.names()]
        window.predict_view.set_models(models)
        window.requests_view.set_model_names(registry.names())
        window.set_models_ready(registry.names(), len(registry.problems))
        return registry

    view = ModelsView(tasks, reload)
    view.show_registry(engine.registry)  # read from the manifests: shown before they load
    window.add_models_view(view, [(text, keys, getattr(view, m)) for text, keys, m in ACTIONS])
    return view
