"""Uploaded models on the other pages: a Hugging Face text model brought through the Load page
keeps its tokenizer (its Importance maps show the words of each text, as a demo's do, not token
ids); a model the engine runs whole says so on the Prune page."""

from __future__ import annotations

from pathlib import Path

import plotly.io
import torch
from streamlit.testing.v1 import AppTest

import workbench as wb
import workbench.io as wio
from tests.helpers import tabular_files
from tests.hf_models import texts, tiny_folder
from ui import uploads

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_an_uploaded_text_models_maps_show_its_words(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(uploads.LOCAL_CODE_ENV, "1")  # a folder is read from a local path
    folder = tiny_folder(tmp_path, "bert")
    lines = [f"__label__t{i % 3} {text}" for i, text in enumerate(texts(24))]
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/load.py").run()
    at.segmented_control(key="load:where").set_value("Path on this machine").run()
    at.text_input(key="load:path").input(str(folder)).run()
    data = "\n".join(lines).encode()
    at.file_uploader(key="load:data").set_value(("val.txt", data, "text/plain")).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    next(b for b in at.button if b.label == "Use this model").click().run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page("pages/importance.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    figure = plotly.io.from_json(at.get("plotly_chart")[0].proto.spec)
    heatmap = next(t for t in figure.data if t.type == "heatmap")
    shown = [str(w) for row in heatmap.text for w in row if w]
    tokenizer = wio.load_model(folder).tokenizer
    first = tokenizer.tokens(tokenizer([lines[0].split(" ", 1)[1]])[0])
    assert shown[: len(first)] == first and first[0] == "[CLS]"


def test_a_model_the_engine_runs_whole_says_so_on_the_prune_page(tmp_path) -> None:
    files = tabular_files(tmp_path)
    scripted = tmp_path / "tab.ts"
    torch.jit.save(torch.jit.script(wb.load_demo("tabular-mlp").model), str(scripted))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/load.py").run()
    model = ("tab.ts", scripted.read_bytes(), "application/octet-stream")
    at.file_uploader(key="load:model").set_value(model).run()
    data = ("val.csv", files["data"].read_bytes(), "text/csv")
    at.file_uploader(key="load:data").set_value(data).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    next(b for b in at.button if b.label == "Use this model").click().run()
    at.switch_page("pages/prune.py").run()
    assert not any("not incremental" in c.value for c in at.caption)  # dense: nothing to say
    slider = next(s for s in at.slider if " · " in s.label)
    slider.set_value(50).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(
        "not incremental: every change reruns the whole model" in c.value for c in at.caption
    )
