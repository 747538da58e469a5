"""Text models: which tokens drive one channel of a layer (Captum's NeuronConductance through
the input embeddings), for the dense and the pruned model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import workbench.explain as ex
from ui import loaders, state
from ui.guard import guard
from ui.importance import NO_BAR, Context
from workbench import plots


def render(ctx: Context, layer: str, marked: pd.DataFrame, steps: int) -> None:
    """A toggle, then a sample, a channel and a token position, and the two token maps."""
    if not st.toggle(
        "Which tokens drive a channel",
        key=state.widget_key("imp-neuron-on"),
        help="Captum's NeuronConductance of one channel at one token position: how much each "
        "token of the text contributes to the prediction through that neuron.",
    ):
        return
    rows = marked[marked["layer"] == layer].sort_values("importance", ascending=False)
    left, middle, right = st.columns(3)
    sample = int(
        left.number_input(
            "Sample",
            min_value=0,
            max_value=ctx.n_samples - 1,
            value=0,
            key=state.widget_key("imp-neuron-sample"),
        )
    )
    channel = int(
        middle.selectbox(
            "Channel (most important first)",
            rows["channel"].tolist(),
            key=state.widget_key("imp-neuron-channel", layer),
        )
    )
    ids = ctx.bench.val_inputs[sample]
    token = ex.token_input(ctx.bench.model)
    positions = token.real(ids[None])[0].nonzero()[:, 0].tolist()
    tokenizer = loaders.tokenizer(ctx.key)
    words = (
        tokenizer.tokens(ids[positions])
        if tokenizer is not None
        else [f"#{int(i)}" for i in ids[positions]]
    )
    position = right.selectbox(
        "At the token",
        positions,
        format_func=lambda p: f"{p}: {words[positions.index(p)]}",
        key=state.widget_key("imp-neuron-position"),
    )
    with (
        guard("Cannot compute this neuron's conductance") as outcome,
        st.spinner("NeuronConductance on the dense and the pruned model…"),
    ):
        values = [
            ex.neuron_conductance(ctx.bench, layer, (position, channel), [sample], p, n_steps=steps)
            for p in (None, ctx.plan)
        ]
    if outcome.failed:
        return
    dense, pruned = (np.asarray(v[0][positions].cpu()) for v in values)
    where = f"channel {channel} at “{words[positions.index(position)]}”"
    titles = [(f"#{sample} · dense: through {where}", f"pruned: through {where}")]
    st.plotly_chart(
        plots.token_maps([words], [dense], [pruned], titles), width="stretch", config=NO_BAR
    )
    st.caption(
        f"Each token's conductance through {layer}'s {where} ({steps} steps from the padding "
        "baseline, at the input embeddings): red raises the explained output through this "
        "neuron, blue lowers it. A removed channel conducts nothing in the pruned model."
    )
