from __future__ import annotations

import zlib

import torch

from workbench.pruning.criteria.base import Criterion, LayerContext


class Random(Criterion):
    name = "random"
    label = "Random (seeded)"
    description = (
        "Removes weights at random: the baseline every real criterion must beat. "
        "The same seed always removes the same weights."
    )

    def scores(self, context: LayerContext) -> torch.Tensor:
        # A per-layer stream derived from the seed and the name, stable across runs and processes.
        generator = torch.Generator().manual_seed(
            (context.seed * 1_000_003 + zlib.crc32(context.layer.name.encode())) % 2**63
        )
        scores = torch.rand(context.weight.shape, generator=generator, dtype=torch.float64)
        return scores.to(context.weight.device)
