"""Section 1 of the Load page: the model, from an upload or (when allowed) a path."""

from __future__ import annotations

import streamlit as st

from ui import uploads


def render(local: bool) -> tuple[uploads.Upload | None, tuple | None, str, bool]:
    """The model's upload, its cache key, the architecture and whether to trust pickles."""
    model_upload: uploads.Upload | None = None
    model_key: tuple | None = None  # what identifies the files for the cache: ids, not bytes
    st.subheader("1 · Model")
    where = "Upload"
    if local:
        where = st.segmented_control(
            "Model from",
            ["Upload", "Path on this machine"],
            default="Upload",
            key="load:where",
            help="A path for big files and Hugging Face folders (config.json + safetensors).",
        )
    if where == "Path on this machine":
        path = st.text_input(
            "Model file or Hugging Face folder", key="load:path", placeholder="/models/my-model"
        )
        if path.strip():
            model_upload = uploads.Upload(name=path.strip().rstrip("/").split("/")[-1], path=path)
            model_key = ("path", path.strip(), uploads.modified(path))
    else:
        file = st.file_uploader(
            "Model file",
            key="load:model",
            help="A torch.export program (.pt2), a TorchScript file, safetensors or a .pt/.pth "
            "state dict (give the architecture below). The format is read from the content.",
        )
        if file is not None:
            model_upload = uploads.Upload(name=file.name, data=file.getvalue())
            model_key = ("upload", file.file_id, file.name, file.size)
    architecture = ""
    trust = False
    if local and where == "Path on this machine":
        architecture = st.text_input(
            "Architecture, for a weights file",
            key="load:arch",
            placeholder="path/to/file.py:factory",
            help="A Python file on the machine running this app and the function or class in "
            "it that builds the model (no arguments). Never taken from an upload.",
        )
        trust = st.checkbox(
            "I trust this file: allow unpickling a whole pickled model",
            key="load:trust",
            help="Only for files you made yourself or fully trust.",
        )
        if trust:
            st.warning(
                "**Unpickling runs code.** A pickled file can run any program on this machine "
                "when it is loaded. Tick this only for a file you trust.",
                icon=":material/warning:",
            )
    return model_upload, model_key, architecture, trust
