"""The framework's floor: a trivial Streamlit page with one slider and one number."""

import streamlit as st

value = st.slider("Value", 0, 100, 0)
st.metric("Result", f"{value * 2:,}")
