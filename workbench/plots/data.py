"""Figures of a loaded data set."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.io import LoadedData, preview_images


def preview_figure(data: LoadedData, n: int = 8) -> go.Figure | None:
    """A row of sample images as the model will see them (normalisation undone), with classes."""
    images = preview_images(data, n)
    if not images:
        return None
    fig = make_subplots(
        rows=1,
        cols=len(images),
        subplot_titles=[label or " " for _, label in images],
        horizontal_spacing=0.02,
    )
    for i, (image, _) in enumerate(images, start=1):
        fig.add_trace(go.Image(z=np.asarray(image)), row=1, col=i)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=170, margin=dict(l=0, r=0, t=28, b=0))
    return fig
