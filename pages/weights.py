"""Weights page: every layer's weight distribution and where the current plan cuts it."""

import streamlit as st

from ui import loaders, state
from workbench import plots
from workbench.inspect import magnitude_cut, weight_histogram, weight_map

state.route_through_app("pages/weights.py")

bench = loaders.bench(state.demo())
plan = state.plan()
masks = bench.masks(plan)

st.title("Weights")
st.caption(
    "Histograms are binned on the server, so a layer of millions of weights draws as "
    "fast as a small one. Grey: the dense model's weights. Indigo: what the current plan "
    "keeps. Red lines: the magnitude below which weights are removed."
)

controls = st.columns([2, 1, 1], vertical_alignment="bottom")
start = state.start_layer(bench.layer_names, plan)
layer = controls[0].selectbox("Layer", bench.layer_names, index=bench.layer_names.index(start))
log = controls[1].toggle("Log count axis", value=False)
show_mask = controls[2].toggle("Show mask on the map", value=True)

weight = bench.dense_weight(layer)
keep = masks.get(layer)
row = bench.layers.set_index("name").loc[layer]
removed = 0 if keep is None else int((~keep).sum())
st.markdown(
    f"**{layer}** · {row['kind']} · weight {row['shape']} · {row['params']:,} weights · "
    f"**{removed:,}** removed ({removed / row['params']:.1%})"
)

detail, heat = st.columns(2, gap="large")
with detail:
    st.plotly_chart(
        plots.histogram(
            weight_histogram(weight, keep),
            magnitude_cut(weight, keep),
            log=log,
            title="Distribution",
            height=420,
        ),
        width="stretch",
        config={"displayModeBar": False},
    )
with heat:
    picture = weight_map(weight, keep)
    title = "Weight map" + (
        f" (each cell averages {picture.pooled[0]}×{picture.pooled[1]} weights)"
        if picture.pooled != (1, 1)
        else ""
    )
    st.markdown(f"**{title}**")
    st.plotly_chart(
        plots.weight_heatmap(
            picture.values,
            picture.kept,
            picture.row_label,
            picture.col_label,
            show_mask=show_mask,
            height=390,
            rows=picture.rows,
            cols=picture.cols,
        ),
        width="stretch",
        config={"displayModeBar": False},
    )

st.subheader("All layers")
panels = []
for name in bench.layer_names:
    w, k = bench.dense_weight(name), masks.get(name)
    panels.append((name, weight_histogram(w, k, bins=40), magnitude_cut(w, k)))
st.plotly_chart(
    plots.histogram_grid(panels, log=log), width="stretch", config={"displayModeBar": False}
)
