"""Server-side summaries of weights for charts: histograms and downsampled weight maps.

Charts never receive raw weights: a layer of ten million weights draws as fast as a small one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F


def weight_histogram(
    weight: torch.Tensor, keep: torch.Tensor | None = None, bins: int = 60
) -> pd.DataFrame:
    """Counts of dense and kept weights in `bins` equal bins spanning ±max|w|."""
    values = weight.detach().float().reshape(-1).cpu()
    limit = float(values.abs().max()) or 1.0
    edges = torch.linspace(-limit, limit, bins + 1)
    dense = torch.histc(values, bins=bins, min=-limit, max=limit)
    if keep is None:
        kept = dense
    else:
        kept = torch.histc(values[keep.reshape(-1).cpu()], bins=bins, min=-limit, max=limit)
    return pd.DataFrame(
        {
            "left": edges[:-1].numpy(),
            "right": edges[1:].numpy(),
            "dense": dense.numpy().astype(np.int64),
            "kept": kept.numpy().astype(np.int64),
        }
    )


def magnitude_cut(weight: torch.Tensor, keep: torch.Tensor | None) -> float | None:
    """The |w| below which weights were removed, when the removed set is exactly the smallest.

    None when nothing was removed or the cut is not a magnitude threshold (other criteria,
    channels): then no single line describes it and charts shade bins instead.
    """
    if keep is None or bool(keep.all()):
        return None
    magnitude = weight.detach().abs().reshape(-1).cpu()
    keep = keep.reshape(-1).cpu()
    largest_removed = float(magnitude[~keep].max())
    smallest_kept = float(magnitude[keep].min()) if bool(keep.any()) else float("inf")
    return largest_removed if largest_removed <= smallest_kept else None


@dataclass(frozen=True)
class WeightMap:
    """A 2-D picture of a layer's weights and mask, pooled to at most max_rows × max_cols."""

    values: np.ndarray  # mean weight of each cell
    kept: np.ndarray  # fraction of the cell's weights that are kept
    row_label: str
    col_label: str
    pooled: tuple[int, int]  # how many weights each cell averages, per axis
    #: Where each cell's row / column sits, in the axis' own units (output neuron or filter,
    #: input feature or channel): the centre of the units it covers, so axes count those units,
    #: not cells.
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None


def _centres(length: int, pool: int, per_unit: int) -> np.ndarray:
    """Centre of each pooled cell on an axis of `length` grid lines, `per_unit` lines per unit.

    A unit (a filter whose kernel has `per_unit` rows, say) spans [u − 0.5, u + 0.5].
    """
    starts = np.arange(0, length, pool)
    stops = np.minimum(starts + pool, length)
    return (starts + stops) / 2 / per_unit - 0.5


def weight_map(
    weight: torch.Tensor, keep: torch.Tensor | None = None, max_rows: int = 128, max_cols: int = 192
) -> WeightMap:
    """Linear: the (out, in) matrix. Conv: a grid of kernels, one row of kernels per filter."""
    w = weight.detach().float().cpu()
    k = torch.ones_like(w) if keep is None else keep.detach().float().cpu()
    per_row = per_col = 1  # grid lines per unit of each axis
    if w.dim() == 2:
        grid_w, grid_k = w, k
        row_label, col_label = "output neuron", "input feature"
    elif w.dim() == 4:  # (out, in, kh, kw) → (out·kh, in·kw): each kernel a kh×kw tile
        out, cin, kh, kw = w.shape
        grid_w = w.permute(0, 2, 1, 3).reshape(out * kh, cin * kw)
        grid_k = k.permute(0, 2, 1, 3).reshape(out * kh, cin * kw)
        row_label, col_label = "output filter", "input channel"
        per_row, per_col = kh, kw
    else:  # Conv1d (out, in, k) and Conv3d: each input channel's kernel along the columns
        grid_w, grid_k = w.reshape(w.shape[0], -1), k.reshape(k.shape[0], -1)
        row_label, col_label = "output filter", "input channel"
        per_col = grid_w.shape[1] // max(1, w.shape[1])
    rows, cols = grid_w.shape
    pool = (max(1, -(-rows // max_rows)), max(1, -(-cols // max_cols)))
    if pool != (1, 1):
        grid_w = F.avg_pool2d(grid_w[None, None], pool, ceil_mode=True)[0, 0]
        grid_k = F.avg_pool2d(grid_k[None, None], pool, ceil_mode=True)[0, 0]
    return WeightMap(
        grid_w.numpy(),
        grid_k.numpy(),
        row_label,
        col_label,
        pool,
        _centres(rows, pool[0], per_row),
        _centres(cols, pool[1], per_col),
    )
