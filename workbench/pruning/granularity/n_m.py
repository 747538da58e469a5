from __future__ import annotations

import torch

from workbench.pruning.granularity.base import Granularity
from workbench.pruning.layers import PrunableLayer


class NM(Granularity):
    """Keeps n of every m consecutive weights along the input dimension (input channels).

    The sparsity is fixed at 1 - n/m: any non-zero sparsity applies the pattern. When the input
    dimension is not a multiple of m, the last, shorter group of r weights loses
    floor(r·(m-n)/m) of them.
    """

    ranks_globally = False

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m
        self.name = f"{n}:{m}"
        self.label = f"{n}:{m} semi-structured"
        self.description = (
            f"Keeps the {n} most important of every {m} neighbouring weights along the input "
            f"dimension ({1 - n / m:.0%} sparsity), a pattern sparse tensor cores can run faster."
        )

    def units(self, layer: PrunableLayer) -> torch.Tensor:
        return torch.arange(layer.params).view(layer.shape)

    def _rows(self, layer: PrunableLayer) -> torch.Tensor:
        """Flat weight indices, one row per (output, kernel position), running along the input."""
        index = torch.arange(layer.params).view(layer.shape)
        if len(layer.shape) > 2:
            index = index.movedim(1, -1)
        return index.reshape(-1, layer.shape[1])

    def _dropped_per_group(self, length: int) -> int:
        return length * (self.m - self.n) // self.m

    def removal_order(self, unit_scores: torch.Tensor, layer: PrunableLayer) -> torch.Tensor:
        rows = self._rows(layer)
        removed, kept = [], []
        for start in range(0, rows.shape[1], self.m):
            group = rows[:, start : start + self.m]  # (rows, ≤m)
            order = torch.argsort(unit_scores[group], dim=1, stable=True)
            ranked = group.gather(1, order)
            drop = self._dropped_per_group(group.shape[1])
            removed.append(ranked[:, :drop].reshape(-1))
            kept.append(ranked[:, drop:].reshape(-1))
        return torch.cat(removed + kept)

    def removed_units(
        self, unit_scores: torch.Tensor, order: torch.Tensor, count: int
    ) -> torch.Tensor:
        # No torch counterpart: each group's stable order decides (ties to the lower index).
        removed = torch.zeros(order.numel(), dtype=torch.bool)
        removed[order[:count]] = True
        return removed

    def count(self, sparsity: float, n_units: int, layer: PrunableLayer) -> int:
        if sparsity == 0.0:
            return 0
        rows, length = n_units // layer.shape[1], layer.shape[1]
        full, tail = divmod(length, self.m)
        return rows * (full * self._dropped_per_group(self.m) + self._dropped_per_group(tail))
