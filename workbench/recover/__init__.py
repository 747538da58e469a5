"""Recovery after pruning: fine-tuning with the zeros held, distillation, gradual (AGP) pruning.

A function of a workbench, as the analyses are: `wb.finetune(bench, plan, train_data, ...)`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from workbench.evaluate import Workbench
from workbench.evaluate.modelling import as_tensors
from workbench.pruning.plan import PruningPlan
from workbench.recover.finetune import (
    RecoverError,
    Recovery,
    TrainingStep,
    finetune,
    finetune_iter,
)
from workbench.recover.held import MaskHold, hold_with_prune
from workbench.recover.schedule import Schedule, ScheduleError
from workbench.recover.summary import per_class_change, runs_table

__all__ = [
    "MaskHold",
    "RecoverError",
    "Recovery",
    "Schedule",
    "ScheduleError",
    "TrainingStep",
    "finetune",
    "finetune_iter",
    "masked_model",
    "per_class_change",
    "runs_table",
    "split_data",
]


def masked_model(bench: Workbench, plan: PruningPlan) -> nn.Module:
    """`bench.pruned_model(plan)` holding `torch.nn.utils.prune` masks, ready to train with its
    zeros kept (parameters the model reads outside its modules keep plain zeros)."""
    model = bench.pruned_model(plan)
    for param in model.parameters():
        param.requires_grad_(True)
    hold_with_prune(model, bench.kept(plan), bench.val_inputs[:1])
    return model


def split_data(data: Any, train_share: float = 0.5, seed: int = 0) -> tuple[Any, Any]:
    """Two disjoint parts of one data set, (train, validation), drawn with `seed`; the part for
    training holds `train_share` of the samples. The way to fine-tune when only one set exists."""
    if not 0 < train_share < 1:
        raise RecoverError(f"the training share must be in (0, 1), got {train_share}")
    inputs, targets = as_tensors(data)
    n = len(inputs)
    n_train = round(train_share * n)
    if not 0 < n_train < n:
        raise RecoverError(f"{n} samples cannot be split {train_share:.0%} / {1 - train_share:.0%}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = order[:n_train].sort().values, order[n_train:].sort().values
    if targets is None:  # inputs alone: the form label-free data takes
        return inputs[parts[0]], inputs[parts[1]]
    return TensorDataset(inputs[parts[0]], targets[parts[0]]), TensorDataset(
        inputs[parts[1]], targets[parts[1]]
    )
