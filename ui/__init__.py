"""Streamlit glue: session state, cached loaders, charts and widgets. Pages use only this and
the `workbench` core."""
