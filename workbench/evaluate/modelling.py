"""Model helpers every layer above the engine shares: one copy each.

The data a workbench takes, the prediction tensor of a model's output, the task it implies, and
a private copy of a model that hooks and masks can touch without touching the caller's.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

Task = Literal["classification", "regression"]


def as_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(inputs, targets) from a Dataset of (x, y) pairs or an (X, Y) tensor pair.

    Inputs alone (a tensor, or an (X, None) pair) have no targets: (inputs, None).
    """
    if isinstance(data, torch.Tensor):
        data = (data, None)
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], torch.Tensor)
        and (data[1] is None or isinstance(data[1], torch.Tensor))
    ):
        inputs, targets = data
    elif isinstance(data, TensorDataset):
        inputs, targets = data.tensors[0], data.tensors[1]
    elif isinstance(data, Dataset):
        n = len(data)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("the validation data is empty")
        pairs = [data[i] for i in range(n)]
        inputs = torch.stack([torch.as_tensor(x) for x, _ in pairs])
        targets = torch.stack([torch.as_tensor(y) for _, y in pairs])
    else:
        raise TypeError(
            "val_data must be a Dataset of (input, target) or an (inputs, targets) pair"
        )
    if inputs.shape[0] == 0:
        raise ValueError("the validation data is empty")
    if targets is not None and inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{inputs.shape[0]} inputs but {targets.shape[0]} targets in the validation data"
        )
    if inputs.is_floating_point() and not torch.isfinite(inputs).all():
        raise ValueError("the validation inputs contain NaN or infinite values")
    return inputs, targets


def as_output_tensor(output: Any) -> torch.Tensor:
    """The prediction tensor of a model's output (a tensor, a 1-tuple, or a dict with logits)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return as_output_tensor(output[0])
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    raise TypeError(f"cannot read predictions from a model output of type {type(output).__name__}")


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy; a TorchScript model is copied through its archive (deepcopy makes its
    parameters non-leaf tensors, whose flags can no longer be changed)."""
    if isinstance(model, torch.jit.ScriptModule):
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # TorchScript is deprecated; loaded models still run
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(model, buffer)
            buffer.seek(0)
            return torch.jit.load(buffer, map_location="cpu")
    with warnings.catch_warnings():  # torch's own pytree deprecation, on exported programs
        warnings.simplefilter("ignore", FutureWarning)
        return copy.deepcopy(model)


def named_tensor(model: nn.Module, name: str) -> torch.Tensor:
    """A parameter or buffer by its dotted name; under `torch.nn.utils.prune` the effective
    tensor `name_orig * name_mask`, computed now (the attribute the pruning hook sets is only
    refreshed by the module's next forward)."""
    prefix, _, attribute = name.rpartition(".")
    module = model.get_submodule(prefix) if prefix else model
    orig = getattr(module, f"{attribute}_orig", None)
    if isinstance(orig, torch.Tensor):
        return orig * getattr(module, f"{attribute}_mask")
    return getattr(module, attribute)


def task_of(output: Any) -> Task:
    """Classification for (batch, classes) logits, regression for one value per sample."""
    out = as_output_tensor(output)
    return "classification" if out.dim() == 2 and out.shape[1] > 1 else "regression"
