"""Load your model: a trained model and its validation data, checked, then used by every page."""

import streamlit as st

from ui import staging, state, uploads
from ui.load import data_form, found, model_form, use

state.route_through_app("pages/load.py")

MAX_UPLOAD_MB = int(st.get_option("server.maxUploadSize"))
LOCAL = uploads.local_code_allowed()

st.title("Load your model")
st.caption(
    "Bring a trained model and its validation data. Nothing you upload is ever unpickled or run "
    "as Python, archives are checked before anything is read from them, a model's first "
    f"forward pass runs in a separate process under a time limit, and uploads are capped at "
    f"{MAX_UPLOAD_MB} MB. The server's operator sets these limits."
)

left, right = st.columns(2, gap="large")
with left:
    model_upload, model_key, architecture, trust = model_form.render(LOCAL)
with right:
    data_upload, data_key, options = data_form.render()

if model_upload is None and data_upload is None:
    st.info(
        "Upload a model and its validation data to see what was found and whether they fit.",
        icon=":material/upload_file:",
    )
    staging.release()
    st.stop()

caps = uploads.limits(MAX_UPLOAD_MB)
model_options = uploads.ModelOptions(architecture=architecture, trust_pickle=trust)
staged = staging.staged(
    (model_key, data_key, model_options, options),
    lambda: uploads.stage(model_upload, data_upload, model_options, options, caps),
)
found.render(staged, model_upload is not None, data_upload is not None)
use.render(staged)
