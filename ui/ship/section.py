"""Ship: what the plan's model is once channels are physically gone, how fast it runs, and its
exports. Compaction and exports come from `workbench.ship`; this module only draws them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from ui import loaders, state, widgets
from ui.guard import guard
from ui.history import tracking
from workbench import (
    EXPORT_FORMATS,
    GRANULARITIES,
    PruningPlan,
    Workbench,
    WorkbenchError,
    compact,
    export_formats,
    int8_available,
    plan_latency,
    plots,
    quantize,
    read_plan,
)

#: Measurements kept (shared by sessions: the same model and plan measure the same).
_KEPT_MEASUREMENTS = 32


@st.cache_resource(max_entries=16, show_spinner="Building the compacted model…")
def _compacted(key: str, bench_id: int, plan_json: str, _bench: Workbench) -> dict | str:
    """The compacted model's figures, or why there is none."""
    try:
        small = compact(_bench, PruningPlan.from_json(plan_json))
    except WorkbenchError as error:
        return str(error)
    found = {
        "params": small.params,
        "bytes": small.dense_bytes,
        "flops": small.flops(_bench.val_inputs[:1]),
    }
    if int8_available():  # measured: the int8 model's serialized tensors
        quantized = quantize(_bench, PruningPlan.from_json(plan_json))
        found["int8_bytes"], found["fp32_layers"] = quantized.bytes, quantized.fp32_layers
    return found


@st.cache_resource
def _measurements() -> OrderedDict:
    return OrderedDict()


def compact_cards(plan: PruningPlan, dense: Mapping[str, float]) -> None:
    """For a channel plan: the compacted model's parameters, dense bytes and FLOPs, against
    the dense model's sizes (`Workbench.dense_size`)."""
    if not GRANULARITIES[plan.granularity].structured or not plan.sparsity:
        return
    bench = loaders.current()
    found = _compacted(state.demo(), id(bench), plan.to_json(), bench)
    if isinstance(found, str):
        st.caption(f"Compacted model: {found}.")
        return
    cards = (
        ("Compacted params", f"{found['params']:,}", found["params"], dense["total_params"]),
        (
            "Compacted size (dense fp32)",
            widgets.fmt_bytes(found["bytes"]),
            found["bytes"],
            dense["dense_bytes"],
        ),
        (
            "Compacted FLOPs / sample",
            widgets.fmt_count(found["flops"]),
            found["flops"],
            dense["flops_dense"],
        ),
    )
    help_text = "The model with removed channels physically gone (wb.compact): stored densely, "
    help_text += "no sparse format needed, and a dense kernel really runs less."
    helps = [help_text] * len(cards)
    if "int8_bytes" in found:
        cards += (
            (
                "Compacted int8 (measured)",
                widgets.fmt_bytes(found["int8_bytes"]),
                found["int8_bytes"],
                dense["dense_bytes"],
            ),
        )
        fp32 = ", ".join(found["fp32_layers"]) or "none"
        helps.append(
            "The compacted model with int8 weights (wb.quantize: torchao, weights only), its "
            f"tensors serialized as safetensors and measured. Layers left fp32: {fp32}."
        )
    for column, (label, value, now, was), text in zip(
        st.columns(len(cards)), cards, helps, strict=True
    ):
        column.metric(
            label,
            value,
            f"{now / was - 1:+.1%}",
            delta_color="inverse",
            border=True,
            help=text,
        )


def render(plan: PruningPlan) -> None:
    bench = loaders.current()
    ship = widgets.open_expander(
        st, "Ship: measured latency and downloads", ":material/rocket_launch:", "ship-open"
    )
    if ship is None:
        return
    with ship:
        left, right = st.columns([1, 1.4], gap="large")
        batch = widgets.choice(left, "Batch", ["1", "validation batch"], "ship-batch")
        size = 1 if batch == "1" else min(bench.batch_size, len(bench.val_inputs))
        key = (state.demo(), id(bench), plan, size)
        store = _measurements()
        if left.button("Measure latency", icon=":material/timer:"):
            with guard("Latency could not be measured"), st.spinner("Timing…"):
                store[key] = plan_latency(bench, plan, size)
                while len(store) > _KEPT_MEASUREMENTS:
                    store.popitem(last=False)
        table = store.get(key)
        if table is None:
            left.caption(
                "Dense, masked (zeros), compacted and compacted int8 models, timed with "
                "torch.utils.benchmark on this server (median of runs, IQR)."
            )
        else:
            _latency(left, right, table)
        st.markdown("**Downloads**")
        downloads(bench, plan, latency=table)
        _import_plan(bench)


def _import_plan(bench: Workbench) -> None:
    """A plan exported earlier (JSON or YAML) back onto the sliders."""
    upload = st.file_uploader(
        "Import a plan (JSON or YAML)",
        type=["json", "yaml", "yml"],
        key=state.widget_key("plan-import"),
    )
    if upload is None or not st.button("Use this plan", icon=":material/upload_file:"):
        return
    with guard("This plan cannot be used on this model"):
        imported = read_plan(upload.getvalue(), upload.name)
        bench.masks(imported)  # names layers this model has, in range: else a PlanError
        state.set_plan(imported)
        st.rerun(scope="app")  # the sliders are drawn from the plan on the next run


def _latency(left: st.delta_generator.DeltaGenerator, right, table: pd.DataFrame) -> None:
    # The cards get the expander's whole width (below the controls and the chart): in the
    # controls' column four or five of them were too narrow to read.
    for column, row in zip(st.columns(len(table)), table.itertuples(), strict=True):
        column.metric(
            row.label,
            f"{row.median_s * 1e3:.2f} ms",
            f"{row.speedup:.2f}× dense",
            delta_color="off",
            delta_arrow="off",
            help=f"IQR {row.iqr_s * 1e3:.3f} ms over {row.runs} runs, {row.threads} threads",
        )
    left.caption(
        "On a small model the call overhead dominates; removed channels pay off where "
        "convolutions and matrix products dominate the time."
    )
    right.plotly_chart(plots.latency_bars(table), width="stretch", config={"displayModeBar": False})


def downloads(
    bench: Workbench,
    plan: PruningPlan,
    *,
    model: Any = None,
    latency: pd.DataFrame | None = None,
    stem: str = "pruned",
) -> None:
    """A download button per export format, each file made on click; `model`: a trained copy
    of the pruned model (a Recovery) instead of the plan's."""
    formats = export_formats()
    made = tracking.export_keeper(stem)  # each file made is kept as a run, the file with it
    for column, name in zip(st.columns(len(formats)), formats, strict=True):
        suffix, label = EXPORT_FORMATS[name]
        file_name = f"{state.demo()}-{stem}{suffix}"
        column.download_button(
            label,
            data=lambda name=name, file_name=file_name: made(
                plan, name, file_name, model=model, latency=latency
            ),
            file_name=file_name,
            key=state.widget_key(f"download-{stem}", name),
            on_click="ignore",
            width="stretch",
        )


def measured(plan: PruningPlan) -> pd.DataFrame | None:
    """The latest latency table measured for the current model and `plan` (any batch size)."""
    bench, demo = loaders.current(), state.demo()
    found = [
        table
        for (key_demo, bench_id, key_plan, _), table in _measurements().items()
        if key_demo == demo and bench_id == id(bench) and key_plan == plan
    ]
    return found[-1] if found else None
