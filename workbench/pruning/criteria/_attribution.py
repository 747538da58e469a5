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

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext


class ChannelAttribution(Criterion):
    """Scores weights by their output channel's attribution (see the module docstring)."""

    needs_data = True

    def __init__(self, attribution: str, label: str, description: str) -> None:
        #: The layer-importance method (workbench.explain LAYER_METHODS) it ranks by.
        self.attribution = attribution
        self.name, self.label, self.description = attribution, label, description

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


CONDUCTANCE = ChannelAttribution(
    "conductance",
    "Conductance (Captum)",
    "Removes the channels through which the least of the prediction flows: Captum's "
    "LayerConductance (Integrated Gradients at the layer) on the dense model, mean absolute "
    "over validation samples. Single weights: the channel's score split by |w|·‖x‖.",
)
GRADIENT_X_ACTIVATION = ChannelAttribution(
    "gradient_x_activation",
    "Gradient × activation (Captum)",
    "Removes the channels whose output times the prediction's gradient is smallest "
    "(Captum's LayerGradientXActivation on the dense model, mean absolute over validation "
    "samples): a first-order estimate of what losing the channel costs. Single weights: "
    "the channel's score split by |w|·‖x‖.",
)
