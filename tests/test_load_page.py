"""The "Load your model" page: uploads through AppTest, and the upload handling it calls.

A torch.export program and a CSV uploaded on the page become the app's model: every page then
shows exactly what `Workbench.evaluate` says. Bad uploads show one clear error, never a
traceback, and the app keeps working with the user's earlier model and plan.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

import workbench as wb
import workbench.io as wio
import workbench.plots as wb_plots
from tests.helpers import Evil, tabular_files
from ui import uploads

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/load.py"


@pytest.fixture(scope="module")
def tabular(tmp_path_factory) -> dict[str, object]:
    """The tabular demo as a user would bring it: a .pt2 program and its validation CSV."""
    folder = tmp_path_factory.mktemp("upload")
    brought = tabular_files(folder)
    demo = wb.load_demo("tabular-mlp")
    save_file(demo.model.state_dict(), folder / "tab.safetensors")
    (folder / "arch.py").write_text(
        "from workbench.models.architectures import TabularMLP\n\ndef build():\n"
        "    return TabularMLP()\n"
    )
    return {
        "pt2": brought["model"].read_bytes(),
        "csv": brought["data"].read_bytes(),
        "safetensors": (folder / "tab.safetensors").read_bytes(),
        "arch": f"{folder / 'arch.py'}:build",
        "bench": wb.Workbench(demo.model, demo.val),
        "folder": folder,
    }


def load_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def upload(at: AppTest, key: str, name: str, data: bytes) -> AppTest:
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def errors(at: AppTest) -> str:
    """The error boxes' text as a reader sees it (messages are escaped so Markdown stays out)."""
    return "\n".join(re.sub(r"\\(.)", r"\1", e.value).replace("\u200b", "") for e in at.error)


# ---- the page ------------------------------------------------------------------------------------


def test_page_invites_an_upload() -> None:
    at = load_page()
    assert at.title[0].value == "Load your model"
    assert [u.label for u in at.file_uploader] == ["Model file", "Data file"]
    assert any("Upload a model" in i.value for i in at.info)
    assert not at.error


def test_upload_use_and_prune(tabular) -> None:
    bench: wb.Workbench = tabular["bench"]  # type: ignore[assignment]
    at = load_page()
    upload(at, "load:model", "tabular.pt2", tabular["pt2"])
    upload(at, "load:data", "breast-cancer.csv", tabular["csv"])
    assert not at.error, errors(at)
    assert at.selectbox(key="load:target").value == "target"
    checks = at.dataframe[0].value
    assert list(checks["check"]) == ["prunable layers", "weights", "dry run", "targets"]
    assert set(checks["result"]) == {"OK"}
    button = next(b for b in at.button if b.label == "Use this model")
    assert not button.disabled
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    # The whole app switched to the upload: the Model page shows its exact dense metrics.
    assert at.session_state["demo"] == "yours-tabular"
    assert at.title[0].value == "tabular.pt2 (yours)"
    assert metric(at, "Accuracy") == f"{bench.dense_metrics['accuracy']:.2%}"
    assert list(at.dataframe[0].value["name"]) == bench.layer_names

    at.switch_page("pages/prune.py").run()
    slider = next(s for s in at.slider if s.label.startswith("net.0 ·"))
    slider.set_value(60).run()
    assert not at.exception, [e.value for e in at.exception]
    report = bench.evaluate(wb.PruningPlan({"net.0": 0.6}))
    assert metric(at, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
    assert metric(at, "Non-zero params") == f"{report.size['nonzero_params']:,}"
    at.switch_page("pages/weights.py").run()
    assert not at.exception, [e.value for e in at.exception]


def test_bad_uploads_show_errors_and_keep_the_app(tabular, tmp_path) -> None:
    marker = tmp_path / "PWNED"
    evil = io.BytesIO()
    torch.save(Evil(marker), evil)
    at = load_page(query={"demo": "digits-cnn", "sp": "features.2:0.4"})

    upload(at, "load:model", "cut.pt2", tabular["pt2"][: len(tabular["pt2"]) // 2])
    assert "cut.pt2" in errors(at) and "truncated or corrupt" in errors(at)

    upload(at, "load:model", "model.pt", evil.getvalue())
    assert "pickled Python objects" in errors(at) and "builtins.exec" in errors(at)
    assert not marker.exists()

    upload(at, "load:model", "tabular.pt2", tabular["pt2"])
    assert not at.error
    bad_labels = tabular["csv"].replace(b",1\n", b",7\n")  # type: ignore[union-attr]
    upload(at, "load:data", "labels.csv", bad_labels)
    assert "labels must be within 0..1 for a model with 2 outputs" in errors(at)
    assert next(b for b in at.button if b.label == "Use this model").disabled

    upload(at, "load:data", "empty.csv", b"a,b,target\n")
    assert "has a header (a, b, target) but no rows" in errors(at)

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats/../../x.png", b"\x89PNG")
    upload(at, "load:data", "escape.zip", bomb.getvalue())
    assert "climbs out of its folder" in errors(at)

    # Nothing was switched, and the demo keeps its plan.
    assert at.session_state["demo"] == "digits-cnn"
    at.switch_page("pages/prune.py").run()
    assert not at.exception
    assert next(s for s in at.slider if s.label.startswith("features.2 ·")).value == 40


def test_a_weights_file_on_this_machine_with_its_architecture(tabular, monkeypatch) -> None:
    monkeypatch.setenv(uploads.LOCAL_CODE_ENV, "1")
    bench: wb.Workbench = tabular["bench"]  # type: ignore[assignment]
    at = load_page()
    at.segmented_control(key="load:where").set_value("Path on this machine").run()
    at.text_input(key="load:path").input(str(tabular["folder"] / "tab.safetensors")).run()
    upload(at, "load:data", "tab.csv", tabular["csv"])
    assert "holds weights only" in errors(at)  # the architecture is asked for, precisely
    at.text_input(key="load:arch").input(tabular["arch"]).run()
    assert not at.error, errors(at)
    next(b for b in at.button if b.label == "Use this model").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["demo"] == "yours-tab"
    assert metric(at, "Accuracy") == f"{bench.dense_metrics['accuracy']:.2%}"


def test_trusting_a_file_shows_the_warning(monkeypatch) -> None:
    monkeypatch.setenv(uploads.LOCAL_CODE_ENV, "1")
    at = load_page()
    assert not any(c.key == "load:trust" for c in at.checkbox)  # never offered for an upload
    at.segmented_control(key="load:where").set_value("Path on this machine").run()
    at.checkbox(key="load:trust").check().run()
    assert any("Unpickling runs code" in w.value for w in at.warning)


# ---- the upload handling the page calls -----------------------------------------------------


def test_handle_upload_gives_the_demo_workbench(tabular) -> None:
    bench: wb.Workbench = tabular["bench"]  # type: ignore[assignment]
    built = uploads.handle_upload(tabular["pt2"], "tab.pt2", tabular["csv"], "tab.csv")
    assert built.error is None and built.bench is not None and built.info is not None
    plan = wb.PruningPlan({"net.0": 0.3, "net.2": 0.9})
    assert built.bench.evaluate(plan).metrics == bench.evaluate(plan).metrics
    assert built.info.task == "classification" and built.info.n_val == 113
    assert built.info.feature_names == wb.load_demo("tabular-mlp").meta.feature_names


def test_weights_need_a_local_architecture(tabular, monkeypatch) -> None:
    monkeypatch.setenv(uploads.LOCAL_CODE_ENV, "1")
    built = uploads.handle_upload(
        tabular["safetensors"], "tab.safetensors", tabular["csv"], "t.csv"
    )
    assert "holds weights only" in built.error and "path/to/file.py:factory" in built.error
    options = uploads.ModelOptions(architecture=tabular["arch"])
    built = uploads.handle_upload(
        tabular["safetensors"], "tab.safetensors", tabular["csv"], "t.csv", options
    )
    assert built.error is None
    assert built.bench.dense_metrics == tabular["bench"].dense_metrics


def test_upload_caps(tabular, monkeypatch) -> None:
    caps = uploads.limits(max_upload_mb=0.01)
    built = uploads.handle_upload(tabular["pt2"], "tab.pt2", tabular["csv"], "tab.csv", caps=caps)
    assert "over the 0.0 MB limit" in built.error
    monkeypatch.setenv("WORKBENCH_MAX_UNPACKED_MB", "16")  # the operator's cap, not the page's
    staged = uploads.stage(
        None,
        uploads.Upload("bomb.zip", data=_bomb()),
        caps=uploads.limits(max_upload_mb=200),
    )
    assert "would decompress to 32.0 MB, over the 16.0 MB limit" in staged.data_error


def _bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(32):
            archive.writestr(f"cats/{i}.png", bytes(1 << 20))  # 1 MB each: under the ratio cap
    return buffer.getvalue()


def test_local_code_is_off_unless_the_operator_turns_it_on(tabular, monkeypatch) -> None:
    monkeypatch.delenv(uploads.LOCAL_CODE_ENV, raising=False)
    options = uploads.ModelOptions(trust_pickle=True)
    built = uploads.handle_upload(tabular["pt2"], "tab.pt2", tabular["csv"], "t.csv", options)
    assert "never unpickled, trusted or not" in built.error
    options = uploads.ModelOptions(architecture=tabular["arch"])
    built = uploads.handle_upload(tabular["pt2"], "tab.pt2", tabular["csv"], "t.csv", options)
    assert "does not allow" in built.error and "WORKBENCH_LOCAL_CODE=1" in built.error
    at = load_page()
    assert not any(c.key == "load:trust" for c in at.checkbox)
    assert not any(t.key in ("load:arch", "load:path") for t in at.text_input)
    assert not any(c.key == "load:where" for c in at.segmented_control)


def test_unique_keys() -> None:
    assert uploads.unique_key("My Model.v2.pt2", []) == "yours-my-model-v2"
    assert uploads.unique_key("m.pt2", ["yours-m", "yours-m-2"]) == "yours-m-3"


def test_image_preview_figure(tmp_path) -> None:
    demo = wb.load_demo("digits-cnn")
    x, y = demo.val.tensors
    data = wio.LoadedData(
        inputs=x[:6],
        targets=y[:6],
        info=wio.DataInfo(
            source="d.zip", format="images", input_kind="image", n=6, n_total=6,
            class_names=tuple(str(i) for i in range(10)),
        ),
    )  # fmt: skip
    figure = wb_plots.preview_figure(data, n=4)
    assert len(figure.data) == 4 and figure.data[0].type == "image"
    titles = [a.text for a in figure.layout.annotations]
    assert titles == [str(c) for c in sorted(set(y[:6].tolist()))[:4]]  # one per class first
