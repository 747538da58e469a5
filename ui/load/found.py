"""Section 3 of the Load page: what was found in the files, and the checks."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ui import uploads
from ui.text import plain
from workbench import plots
from workbench.io import (
    DATA_FORMATS,
)


def render(staged: Any, model_given: bool, data_given: bool) -> None:
    st.subheader("3 · What was found")
    if staged.model_error:
        st.error(f"**Model:** {plain(staged.model_error)}", icon=":material/error:")
    if staged.data_error:
        st.error(f"**Data:** {plain(staged.data_error)}", icon=":material/error:")
    summary = st.columns(2, gap="large")
    if staged.model is not None:
        with summary[0]:
            st.markdown("**Model**")
            st.markdown("\n".join(f"- {plain(line)}" for line in uploads.model_lines(staged.model)))
    if staged.data is not None:
        with summary[1]:
            info = staged.data.info
            st.markdown("**Data**")
            facts = [
                f"{info.source}: {DATA_FORMATS.get(info.format, info.format)}, {info.n:,} "
                "validation samples of "
                f"{'×'.join(map(str, staged.data.inputs.shape[1:]))} ({info.input_kind})"
            ]
            if info.class_names:
                facts.append(f"classes: {', '.join(info.class_names[:20])}")
            if info.feature_names:
                names = info.feature_names
                more = " …" if len(names) > 8 else ""
                facts.append(f"{len(names)} features: {', '.join(names[:8])}{more}")
            st.markdown("\n".join(f"- {plain(line)}" for line in [*facts, *info.notes]))
        figure = plots.preview_figure(staged.data)
        if figure is not None:
            st.markdown(
                "**Preview**, as the model will see them (normalisation undone for display)"
            )
            st.plotly_chart(figure, width="stretch", config={"displayModeBar": False})
        if staged.data.info.examples:
            st.dataframe(
                pd.DataFrame({"first inputs": list(staged.data.info.examples)}), hide_index=True
            )

    if staged.report is not None:
        st.markdown("**Checks**")
        st.dataframe(
            uploads.findings_table(staged.report),
            hide_index=True,
            width="stretch",
            column_config={
                "result": st.column_config.TextColumn("Result", width=80),
                "check": st.column_config.TextColumn("Check", width=130),
                "message": st.column_config.TextColumn("What was found", width=720),
            },
        )
        for finding in staged.report.errors:
            st.error(f"**{finding.check}:** {plain(finding.message)}", icon=":material/error:")
    elif staged.model is not None and staged.data is None and not data_given:
        st.info("Now upload the validation data.", icon=":material/dataset:")
    elif staged.data is not None and staged.model is None and not model_given:
        st.info("Now give the model.", icon=":material/hub:")
