"""Capture the outputs of named submodules with forward hooks: one mechanism for teacher and student."""
from typing import Any, Dict, Sequence

import torch.nn as nn


class FeatureRecorder:
    """Records the outputs of ``model``'s submodules named in ``names`` while active.

    Hooks stay registered for the life of the recorder but only store outputs inside a
    ``with recorder:`` block, so inference and validation keep no references to features.
    If a module runs more than once in a block, its last output is kept.

    Args:
        model: the network to watch.
        names: dotted submodule names as in ``model.named_modules()`` (``'neck'``,
            ``'backbone.layer3'``); ``''`` is the model itself.

    Example:
        >>> recorder = FeatureRecorder(detector, ['neck'])
        >>> with recorder:
        ...     losses = detector.loss(inputs, data_samples)
        >>> neck_outputs = recorder['neck']
    """

    def __init__(self, model: nn.Module, names: Sequence[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            children = ', '.join(name for name, _ in model.named_children())
            raise KeyError(f'{type(model).__name__} has no submodule {missing[0]!r} to record features from '
                           f'(its top-level submodules: {children})')
        self.names = list(names)
        self.outputs: Dict[str, Any] = {}
        self._active = False
        self._handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):

        def hook(module, inputs, output):
            if self._active:
                self.outputs[name] = output

        return hook

    def __enter__(self) -> 'FeatureRecorder':
        self.outputs = {}
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self._active = False

    def __getitem__(self, name: str) -> Any:
        if name not in self.outputs:
            raise KeyError(f'no output recorded for {name!r}: the module did not run inside the recording block')
        return self.outputs[name]

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
