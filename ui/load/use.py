"""Section 4 of the Load page: build the engine and add the model to the session."""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from ui import staging, state, uploads
from ui.progress import show
from ui.text import plain


def render(staged: Any) -> None:
    st.subheader("4 · Use it")
    key = uploads.unique_key(
        staged.model.source if staged.model else "model", list(state.uploads())
    )
    if st.button(
        "Use this model", type="primary", disabled=not staged.ready, icon=":material/check_circle:"
    ):
        built = uploads.build(staged, key, run=partial(show, text="Building the workbench"))
        if built.error is not None:
            st.error(plain(built.error), icon=":material/error:")
        else:
            assert built.info is not None and built.bench is not None
            tokenizer = getattr(staged.model, "tokenizer", None)
            state.add_upload(key, built.info, built.bench, built.train, tokenizer)
            staging.release()
            st.switch_page("pages/model.py")
    st.caption(
        "The model then appears in the sidebar's model list as "
        f"**{key}**, for every page: weights, pruning, importance. It stays for this browser "
        "session only; the demos and your plans for them are kept."
    )
