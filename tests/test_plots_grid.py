"""The Weights page's small multiples hold any number of layers (a 37-layer transformer made the
row gaps alone exceed the figure: plotly refused a domain above 1)."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

import workbench.plots as plots
from workbench.inspect import weight_histogram


@pytest.mark.parametrize("layers", [1, 3, 4, 21, 37, 60])
def test_every_panel_keeps_its_height_however_many_layers(layers: int) -> None:
    bins = weight_histogram(torch.randn(64, 16))
    figure = plots.histogram_grid([(f"layer{i}", bins, 0.1) for i in range(layers)])
    go.Figure(figure)  # plotly validates every domain
    spans = [figure.layout[f"yaxis{'' if i == 0 else i + 1}"].domain for i in range(layers)]
    heights = [(top - bottom) * figure.layout.height for bottom, top in spans]  # pixels
    assert max(heights) - min(heights) < 1e-6 * figure.layout.height and min(heights) >= 150
    assert all(0.0 <= bottom < top <= 1.0 for bottom, top in spans)
