"""The load page's staged files, kept per browser session: one set at a time.

Staged models and data are the session's own (an upload is never shared with another
session) and are freed when the session ends, when other files replace them, or once they
are used.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import streamlit as st

from ui.uploads import Staged

_STAGED = "load:staged"  # (key, Staged): not a widget key


def staged(key: Hashable, compute: Callable[[], Staged]) -> Staged:
    """The staged files for `key`, computed once per session; other keys' files are freed."""
    entry = st.session_state.get(_STAGED)
    if entry is None or entry[0] != key:
        st.session_state.pop(_STAGED, None)  # free the old files before loading the new ones
        with st.spinner("Loading and checking your files…"):
            entry = (key, compute())
        st.session_state[_STAGED] = entry
    return entry[1]


def release() -> None:
    st.session_state.pop(_STAGED, None)
