from __future__ import annotations

import torch

from workbench.pruning.granularity.base import Granularity
from workbench.pruning.layers import PrunableLayer


class Unstructured(Granularity):
    name = "unstructured"
    label = "Unstructured (single weights)"
    description = (
        "Removes individual weights anywhere in the layer. Keeps the most accuracy, but the "
        "layer keeps its shape: it only shrinks when stored in a sparse or compressed format."
    )

    def units(self, layer: PrunableLayer) -> torch.Tensor:
        return torch.arange(layer.params).view(layer.shape)
