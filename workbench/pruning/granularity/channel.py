from __future__ import annotations

import torch

from workbench.pruning.granularity.base import Granularity, cut_is_tied
from workbench.pruning.layers import PrunableLayer


class Channel(Granularity):
    """Whole output channels, scored and cut exactly as `torch.nn.utils.prune.ln_structured`
    (dim=0) scores and cuts them."""

    name = "channel"
    label = "Channels (whole neurons / filters)"
    description = (
        "Removes whole output neurons of Linear layers and whole filters of convolutions, "
        "ranked by the norm of the criterion over each. The layer really gets smaller and "
        "faster (a model's output layer keeps its channels: they are its outputs)."
    )
    structured = True

    def units(self, layer: PrunableLayer) -> torch.Tensor:
        out = layer.shape[0]
        view = (out,) + (1,) * (len(layer.shape) - 1)
        return torch.arange(out).view(view).expand(layer.shape)

    def unit_scores(self, scores: torch.Tensor, layer: PrunableLayer, norm: float) -> torch.Tensor:
        # ln_structured's own reduction (prune._compute_norm), in the scores' dtype: the same
        # bits, so the same order and the same ties as torch.
        return torch.norm(scores, p=norm, dim=list(range(1, scores.dim())))

    def removed_units(
        self, unit_scores: torch.Tensor, order: torch.Tensor, count: int
    ) -> torch.Tensor:
        # ln_structured keeps torch.topk(norms, k=kept, largest=True): at a tie, which channels
        # stay is that call's choice, not the complement of topk(largest=False).
        if not cut_is_tied(unit_scores, order, count):
            return super().removed_units(unit_scores, order, count)
        removed = torch.ones(order.numel(), dtype=torch.bool)
        kept = torch.topk(unit_scores, order.numel() - count, largest=True).indices
        removed[kept] = False
        return removed
