"""Model page: what the model and its data are, its layers, and how it does before pruning."""

import streamlit as st

from ui import loaders, state, widgets

state.route_through_app("pages/model.py")

meta = loaders.info(state.demo())
bench = loaders.bench(state.demo())
report = bench.evaluate(state.plan())

st.title(meta.title)
st.markdown(meta.description)

input_text = "×".join(map(str, meta.input_shape))
facts = st.columns(4)
facts[0].metric("Task", meta.task.capitalize(), border=True)
facts[1].metric("Input", f"{meta.input_kind} · {input_text}", border=True)
facts[2].metric("Parameters", f"{report.dense_size['total_params']:,}", border=True)
facts[3].metric("Validation samples", f"{meta.n_val:,}", border=True)

st.subheader("Dense model on the validation set")
trained = f"Trained on {meta.n_train:,} samples; measured" if meta.n_train else "Measured"
st.caption(f"{meta.dataset}. {trained} on {meta.n_val:,} held-out samples.")
widgets.metric_cards(report, dense_only=True)

st.subheader("Prunable layers")
st.caption(
    "Every Linear and Conv weight, in the order the network runs them. Biases are never "
    "pruned. *Share* is the layer's part of all parameters: big layers are where pruning "
    "saves the most."
)
table = bench.layers.merge(report.layers[["name", "sparsity", "nonzero"]], on="name")
st.dataframe(
    table[["name", "kind", "shape", "params", "share", "flops", "sparsity", "nonzero"]],
    hide_index=True,
    width="stretch",
    column_config={
        "name": st.column_config.TextColumn("Layer"),
        "kind": "Kind",
        "shape": "Weight shape",
        "params": st.column_config.NumberColumn("Weights", format="localized"),
        "share": st.column_config.ProgressColumn(
            "Share", format="percent", min_value=0, max_value=1
        ),
        "flops": st.column_config.NumberColumn("FLOPs / sample", format="localized"),
        "sparsity": st.column_config.NumberColumn("Current sparsity", format="percent"),
        "nonzero": st.column_config.NumberColumn("Non-zero", format="localized"),
    },
)
if meta.class_names:
    st.caption("Classes: " + ", ".join(meta.class_names))
if meta.feature_names:
    with st.expander(f"Input features ({len(meta.feature_names)})"):
        st.write(", ".join(meta.feature_names))

st.page_link("pages/prune.py", label="Start pruning", icon=":material/content_cut:")
