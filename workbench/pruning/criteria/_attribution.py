"""The shared scoring of the attribution criteria: a channel's Captum attribution, per weight.

A channel's score is its layer importance on the dense model (`LayerStatistics.
channel_attribution`): mean over validation samples of its absolute attribution, summed over
its positions. Each weight gets the channel's score times its share of the channel's input,
|w|·‖x‖ / Σ|w|·‖x‖ over the channel (Wanda's estimate of a weight's contribution), so that

- channel granularity, which sums scores over a channel, ranks exactly by the attribution;
- unstructured pruning removes weights first from unimportant channels, and within a channel
  the ones that carry the least input.

Layers whose inputs cannot be observed split the score by |w| alone.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext


class ChannelAttribution(Criterion):
    """Scores weights by their output channel's attribution (see the module docstring)."""

    #: The layer-importance method (workbench.explain.importance.LAYER_METHODS) it ranks by.
    attribution: ClassVar[str]
    needs_data = True

    def scores(self, context: LayerContext) -> torch.Tensor:
        layer, weight = context.layer, context.weight.detach().double().cpu()
        channel = context.statistics.channel_attribution(layer, self.attribution)
        channel = channel.detach().double().cpu().reshape(-1)
        try:
            carried = weight.abs() * context.statistics.input_norm(layer).double().cpu()
        except ValueError:  # the layer's inputs cannot be observed
            carried = weight.abs()
        rows = carried.reshape(layer.channels, -1)
        totals = rows.sum(dim=1, keepdim=True)
        uniform = torch.full_like(rows, 1.0 / rows.shape[1])
        share = torch.where(totals > 0, rows / totals.clamp_min(1e-300), uniform)
        return (share * channel[:, None]).reshape(weight.shape)
