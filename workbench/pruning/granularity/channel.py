from __future__ import annotations

import torch

from workbench.pruning.granularity.base import Granularity
from workbench.pruning.layers import PrunableLayer


class Channel(Granularity):
    name = "channel"
    label = "Channels (whole neurons / filters)"
    description = (
        "Removes whole output neurons of Linear layers and whole filters of convolutions, "
        "ranked by the criterion summed over each. The layer really gets smaller and faster."
    )
    structured = True

    def units(self, layer: PrunableLayer) -> torch.Tensor:
        out = layer.shape[0]
        view = (out,) + (1,) * (len(layer.shape) - 1)
        return torch.arange(out).view(view).expand(layer.shape)
