"""A Hugging Face text model brought through the Load page keeps its tokenizer: its Importance
maps show the words of each text, as a demo's do, not token ids."""

from __future__ import annotations

from pathlib import Path

import plotly.io
from streamlit.testing.v1 import AppTest

import workbench.io as wio
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
