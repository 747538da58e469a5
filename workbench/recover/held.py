"""Holding a plan's zeros while a model trains.

Training keeps the zeros in two ways that give the same weights (tests/test_recover.py proves
it): during training every held tensor's gradient is multiplied by its mask and the tensor is
multiplied by it after each optimizer step (this reaches any parameter, in nn.Modules, fx graphs
and TorchScript alike, and survives masks that change during gradual pruning); the model a run
returns holds `torch.nn.utils.prune` masks (`weight_orig * weight_mask`), so training it further
keeps them too.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from workbench.evaluate.modelling import named_tensor

__all__ = ["MaskHold", "hold_with_prune"]


class MaskHold:
    """Keeps `masks` ({tensor name: bool, True = kept}) at zero on a model being trained."""

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
        self._model = model
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self.masks: dict[str, torch.Tensor] = {}
        self.update(masks)

    def update(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Hold these masks from now on (gradual pruning's next step) and apply them."""
        self.release()
        self.masks = dict(masks)
        for name, mask in self.masks.items():
            tensor = named_tensor(self._model, name)
            if tensor.requires_grad:
                keep = mask.to(tensor.device, tensor.dtype)
                self._hooks.append(tensor.register_hook(lambda grad, keep=keep: grad * keep))
        self.apply()

    def apply(self) -> None:
        """Write the zeros in (after each optimizer step: momentum may have moved them)."""
        with torch.no_grad():
            for name, mask in self.masks.items():
                tensor = named_tensor(self._model, name)
                tensor.masked_fill_(~mask.to(tensor.device), 0.0)

    def release(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()


def hold_with_prune(
    model: nn.Module, masks: Mapping[str, torch.Tensor], sample: torch.Tensor
) -> list[str]:
    """Attach `torch.nn.utils.prune.custom_from_mask` to every masked parameter whose module
    the model calls (run once on `sample` to see which); returns the names it could not wrap,
    whose zeros are written into the tensors only (fx graphs of exported programs read their
    parameters directly; TorchScript modules take no hooks; buffers are not parameters)."""
    owners = {}
    for name in masks:
        prefix, _, attribute = name.rpartition(".")
        module = model.get_submodule(prefix) if prefix else model
        if isinstance(getattr(module, attribute, None), nn.Parameter):
            owners[name] = (module, attribute)
    called = _called_modules(model, {id(m): m for m, _ in owners.values()}, sample)
    unwrapped = [name for name in masks if name not in owners or id(owners[name][0]) not in called]
    for name, (module, attribute) in owners.items():
        if id(module) in called:
            mask = masks[name].to(getattr(module, attribute).device)
            prune.custom_from_mask(module, attribute, mask)
    # The pruning hook leaves `weight` as a tensor computed with gradients, which deepcopy
    # refuses; one forward without them leaves plain tensors, so the model can be copied.
    _called_modules(model, {}, sample)
    return unwrapped


def _called_modules(
    model: nn.Module, modules: dict[int, nn.Module], sample: torch.Tensor
) -> set[int]:
    if isinstance(model, torch.jit.ScriptModule):
        return set()
    called: set[int] = set()
    hooks = [
        m.register_forward_pre_hook(lambda module, _: called.add(id(module)))
        for m in modules.values()
        if not isinstance(m, torch.jit.ScriptModule)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(sample)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return called
