"""Section 2 of the Load page: the validation data and its options."""

from __future__ import annotations

import streamlit as st

from ui import uploads
from workbench.io import (
    NORMALISATIONS,
    LoadError,
    as_source,
    csv_columns,
    detect_data_format,
)


def _data_kind(upload: uploads.Upload) -> str | None:
    try:
        return detect_data_format(as_source(upload.data or b"", name=upload.name))
    except LoadError:
        return None  # loading says why, below


def render() -> tuple[uploads.Upload | None, tuple | None, uploads.DataOptions]:
    """The data's upload, its cache key, and how to read it."""
    data_upload: uploads.Upload | None = None
    data_key: tuple | None = None
    options = uploads.DataOptions()
    st.subheader("2 · Validation data")
    data_file = st.file_uploader(
        "Data file",
        key="load:data",
        help="Tensors (.pt or .npz with inputs and targets), a CSV (numeric features and a "
        "target column), a zip of image folders (one sub-folder per class), or a text file "
        "(one input per line; '__label__<class> ' in front for labels). Without targets the "
        "pruned model is compared with the dense one (label-free).",
    )
    if data_file is not None:
        data_upload = uploads.Upload(name=data_file.name, data=data_file.getvalue())
        data_key = ("upload", data_file.file_id, data_file.name, data_file.size)
        kind = _data_kind(data_upload)
        target, ignore, size, channels, norm = None, (), 0, 0, "none"
        mean = std = ()
        if kind == "csv":
            columns = csv_columns(data_upload.data or b"", name=data_upload.name)
            guess = next(
                (c for c in columns if c.lower() in ("target", "label", "labels", "class", "y")),
                None,
            )
            choices = ["(none: label-free)", *columns]
            picked = st.selectbox(
                "Target column",
                choices,
                index=choices.index(guess) if guess else 0,
                key="load:target",
            )
            target = "" if picked == choices[0] else picked
            ignore = tuple(
                st.multiselect(
                    "Ignore columns",
                    [c for c in columns if c != target],
                    key="load:ignore",
                    help="Identifiers, text or dates: every other column must be numeric.",
                )
            )
        if kind == "images":
            a, b, c = st.columns(3)
            size = a.number_input(
                "Image size (px)",
                0,
                1024,
                0,
                key="load:size",
                help="Resize to a square of this side; 0 keeps the images' size.",
            )
            channels = {"auto": 0, "grayscale": 1, "RGB": 3}[
                b.selectbox("Channels", ["auto", "grayscale", "RGB"], key="load:channels")
            ]
            norm = c.selectbox(
                "Normalisation",
                [*NORMALISATIONS, "custom"],
                key="load:norm",
                help="Pixels are scaled to [0, 1], then (x − mean) / std per channel.",
            )
            if norm == "custom":
                m, s = st.columns(2)
                try:
                    mean = tuple(float(v) for v in m.text_input("Mean", "0", key="load:mean")
                                 .split(","))  # fmt: skip
                    std = tuple(float(v) for v in s.text_input("Std", "1", key="load:std")
                                .split(","))  # fmt: skip
                except ValueError:
                    st.error("Mean and std are numbers separated by commas, e.g. 0.5, 0.5, 0.5")
                    mean = std = ()
        with st.expander("Classes, subsampling and split"):
            order = st.text_input(
                "Class order",
                key="load:classes",
                help="Class names in the order of the model's outputs, comma separated. By "
                "default names are sorted (as torchvision's ImageFolder does).",
            )
            a, b = st.columns(2)
            max_samples = a.number_input(
                "Keep at most (samples)", 0, 10_000_000, 0, key="load:max",
                help="0 keeps all. A seeded, class-stratified subsample.",
            )  # fmt: skip
            share = b.slider(
                "Share used for validation", 0.05, 1.0, 1.0, 0.05, key="load:share",
                help="Below 1, a seeded, stratified split keeps the rest apart as training data.",
            )  # fmt: skip
        options = uploads.DataOptions(
            target=target,
            ignore=ignore,
            class_names=tuple(c.strip() for c in order.split(",") if c.strip()),
            image_size=int(size),
            channels=channels,
            normalisation=norm,
            mean=mean,
            std=std,
            max_samples=int(max_samples),
            val_fraction=float(share),
        )
    return data_upload, data_key, options
