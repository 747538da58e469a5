"""A running recovery, redrawn each second: its progress, a Stop button and the live curve."""

from __future__ import annotations

import streamlit as st

from ui.recover.job import Job
from workbench.plots.recover import training_curve

POLL_SECONDS = 1.0


def render(job: Job, metric: str, dense: float, one_shot: float) -> None:
    """Draw the job; while it runs, a fragment polls it and reruns the page when it ends."""

    @st.fragment(run_every=POLL_SECONDS if job.running else None)
    def live() -> None:
        if job.running:
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.progress(job.fraction, text=f"{job.label} · {job.message}")
            right.button(
                "Stop",
                icon=":material/stop:",
                on_click=job.stop.set,
                key="recover-stop",
                disabled=job.stop.is_set(),
                width="stretch",
                help="Stops at the next batch and keeps the best model so far.",
            )
        elif not st.session_state.get(f"recover-shown:{id(job)}"):
            st.session_state[f"recover-shown:{id(job)}"] = True
            st.rerun()  # the run ended: draw the results with the whole page
        st.plotly_chart(
            training_curve(job.history, metric, dense=dense, one_shot=one_shot),
            width="stretch",
            key=f"recover-curve:{id(job)}",
        )

    live()
