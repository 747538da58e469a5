from __future__ import annotations

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext


class Wanda(Criterion):
    name = "wanda"
    label = "Wanda (|w|·‖x‖)"
    description = (
        "Weights and activations: a weight's magnitude times the size (L2 norm over the data) "
        "of the input it multiplies, so small weights on busy inputs survive."
    )
    needs_data = True

    def scores(self, context: LayerContext) -> torch.Tensor:
        return context.weight.abs() * context.statistics.input_norm(context.layer)
