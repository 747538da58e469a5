"""An uploaded torch.export program on the Prune and Importance pages (issue 11, defect 6): the
attribution criteria and every Importance tab work on it, fixed batch or dynamic."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

import workbench as wb

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def program_and_csv(dynamic: bool) -> tuple[bytes, bytes]:
    demo = wb.load_demo("tabular-mlp")
    x, y = demo.val.tensors
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(demo.model, (x[:2],), dynamic_shapes=shapes), buffer)
    frame = pd.DataFrame(x.double().numpy(), columns=list(demo.meta.feature_names))
    frame["target"] = y.numpy()
    return buffer.getvalue(), frame.to_csv(index=False).encode()


def check(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("dynamic", [False, True], ids=["fixed-batch", "dynamic-batch"])
def test_attribution_criteria_and_importance_on_an_uploaded_program(dynamic: bool) -> None:
    model, data = program_and_csv(dynamic)
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page("pages/load.py").run()
    for key, name, payload in (("load:model", "tab.pt2", model), ("load:data", "tab.csv", data)):
        at.file_uploader(key=key).set_value((name, payload, "application/octet-stream")).run()
    next(b for b in at.button if b.label == "Use this model").click().run()
    check(at)
    key = at.session_state["demo"]

    at.switch_page("pages/prune.py").run()
    for method in ("conductance", "gradient_x_activation"):
        at.selectbox(key=f"method:{key}:").set_value(method).run()
        next(s for s in at.slider if s.label.startswith("net.0 ·")).set_value(50).run()
        check(at)
        assert any(m.label == "Accuracy" for m in at.metric)

    at.switch_page("pages/importance.py").run()
    check(at)  # input attributions (Integrated Gradients) are the first tab
    assert at.get("plotly_chart")
    for label in ("Layer importance", "Attribution vs magnitude"):
        at.session_state[f"imp-tab:{key}:"] = label
        at.run()
        check(at)
