"""Load your model: a trained model and its validation data, checked, then used by every page."""

import pandas as pd
import streamlit as st

from ui import staging, state, uploads
from ui.text import plain
from workbench import plots
from workbench.io import (
    DATA_FORMATS,
    NORMALISATIONS,
    LoadError,
    as_source,
    csv_columns,
    detect_data_format,
)

state.route_through_app("pages/load.py")

MAX_UPLOAD_MB = int(st.get_option("server.maxUploadSize"))
LOCAL = uploads.local_code_allowed()


def _data_kind(upload: uploads.Upload) -> str | None:
    try:
        return detect_data_format(as_source(upload.data or b"", name=upload.name))
    except LoadError:
        return None  # loading says why, below


st.title("Load your model")
st.caption(
    "Bring a trained model and its validation data. Nothing you upload is ever unpickled or run "
    "as Python, archives are checked before anything is read from them, a model's first "
    f"forward pass runs in a separate process under a time limit, and uploads are capped at "
    f"{MAX_UPLOAD_MB} MB. The server's operator sets these limits."
)

left, right = st.columns(2, gap="large")
model_upload: uploads.Upload | None = None
model_key: tuple | None = None  # what identifies the files for the cache: ids, not bytes
data_key: tuple | None = None
with left:
    st.subheader("1 · Model")
    where = "Upload"
    if LOCAL:
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
    if LOCAL and where == "Path on this machine":
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

data_upload: uploads.Upload | None = None
options = uploads.DataOptions()
with right:
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
            facts.append(f"{len(info.feature_names)} features: {', '.join(info.feature_names[:8])}"
                         + (" …" if len(info.feature_names) > 8 else ""))  # fmt: skip
        st.markdown("\n".join(f"- {plain(line)}" for line in [*facts, *info.notes]))
    figure = plots.preview_figure(staged.data)
    if figure is not None:
        st.markdown("**Preview**, as the model will see them (normalisation undone for display)")
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
elif staged.model is not None and staged.data is None and data_upload is None:
    st.info("Now upload the validation data.", icon=":material/dataset:")
elif staged.data is not None and staged.model is None and model_upload is None:
    st.info("Now give the model.", icon=":material/hub:")

st.subheader("4 · Use it")
key = uploads.unique_key(staged.model.source if staged.model else "model", list(state.uploads()))
if st.button(
    "Use this model", type="primary", disabled=not staged.ready, icon=":material/check_circle:"
):
    bar = st.progress(0.0, text="Starting…")
    built = uploads.build(staged, key, progress=lambda f, text: bar.progress(f, text=text))
    if built.error is not None:
        bar.empty()
        st.error(plain(built.error), icon=":material/error:")
    else:
        assert built.info is not None and built.bench is not None
        state.add_upload(key, built.info, built.bench)
        staging.release()
        st.switch_page("pages/model.py")
st.caption(
    "The model then appears in the sidebar's model list as "
    f"**{key}**, for every page: weights, pruning, importance. It stays for this browser "
    "session only; the demos and your plans for them are kept."
)
