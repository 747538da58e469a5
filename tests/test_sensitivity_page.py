"""The Sensitivity page with Streamlit's AppTest: scan, views, budget proposals, apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench as wb
from workbench.analysis import scan, solve_budget

APP = str(Path(__file__).resolve().parents[1] / "app.py")
LEVELS = (0.0, 0.5, 0.9)


def open_sensitivity(demo: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["demo"] = demo
    at.run()
    at.switch_page("pages/sensitivity.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def key(kind: str, demo: str) -> str:
    return f"sensitivity-{kind}:{demo}:"


def button(at: AppTest, label: str, index: int = 0):
    return [b for b in at.button if b.label == label][index]


def metric_values(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-mlp")
    return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


def test_scan_views_proposals_and_apply(bench) -> None:
    at = open_sensitivity("digits-mlp")
    assert button(at, "Run scan").disabled is False
    assert not [m for m in at.metric if m.label == "Predicted"], "no proposals before a scan"
    at.text_input(key=key("levels", "digits-mlp")).set_value("0, 50, 90").run()
    button(at, "Run scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]

    # The table on the page is the API's scan. The next rerun shows it from the cache.
    expected = scan(bench, LEVELS)
    table = next(d.value for d in at.dataframe if "level" in d.value.columns)
    assert list(table["accuracy"]) == list(expected["accuracy"])
    at.run()
    assert button(at, "Run scan").disabled is True
    assert any("Scan ready" in c.value for c in at.caption)

    # Three proposals at the default target (80 % sparsity), measured exactly.
    proposals = solve_budget(bench, expected, target=0.8, metric="accuracy")
    measured = metric_values(at, "Measured accuracy")
    assert measured == [f"{p.measured:.2%}" for p in proposals]
    assert metric_values(at, "Predicted") == [f"{p.predicted:.2%}" for p in proposals]
    texts = " ".join(m.value for m in at.markdown)
    assert "Interaction check" in texts and "measured" in texts

    # Apply the equal-drop proposal: the Prune page opens with its sliders and its accuracy.
    equal = proposals[0]
    button(at, "Apply on the Prune page", 0).click().run()
    assert not at.exception, [e.value for e in at.exception]
    sliders = {s.label.split(" ·")[0]: s.value for s in at.slider if " · " in s.label}
    assert sliders == {n: round(equal.plan.sparsity.get(n, 0) * 100) for n in bench.layer_names}
    assert next(m.value for m in at.metric if m.label == "Accuracy") == f"{equal.measured:.2%}"


def test_bad_settings_and_fixed_patterns_are_explained() -> None:
    at = open_sensitivity("tabular-mlp")
    at.text_input(key=key("levels", "tabular-mlp")).set_value("0, 50, 150").run()
    assert not at.exception
    assert any("between 0 and 100" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Run scan"]

    at.text_input(key=key("levels", "tabular-mlp")).set_value("0, 50").run()
    at.selectbox(key=key("granularity", "tabular-mlp")).set_value("2:4").run()
    button(at, "Run scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("fixed sparsity" in i.value for i in at.info)
    assert not metric_values(at, "Predicted")

    # A target no plan can reach is flagged on every proposal; the scan stays on the page.
    at.selectbox(key=key("granularity", "tabular-mlp")).set_value("unstructured").run()
    button(at, "Run scan").click().run()
    at.segmented_control(key=key("kind", "tabular-mlp")).set_value("params").run()
    at.number_input(key=key("t-params", "tabular-mlp")).set_value(0)
    button(at, "Propose budgets").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum("Misses the target" in w.value for w in at.warning) == 3
    assert [d for d in at.dataframe if "level" in d.value.columns]


def test_bootstrap_scan_shows_intervals() -> None:
    at = open_sensitivity("diabetes-regressor")
    at.text_input(key=key("levels", "diabetes-regressor")).set_value("0, 50").run()
    at.number_input(key=key("bootstrap", "diabetes-regressor")).set_value(100).run()
    button(at, "Run scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "level" in d.value.columns)
    assert {"r2_low", "r2_high"} <= set(table.columns)
    assert (table["r2_low"] <= table["r2"]).all() and (table["r2"] <= table["r2_high"]).all()
    assert metric_values(at, "Measured R²")


def test_most_sparsity_within_the_max_drop_recommends_a_measured_proposal() -> None:
    """The default max drop (2 pp): the recommended card is one that meets it measured, its
    Apply button is the primary one, and the whole-layer switch reaches the solver."""
    at = open_sensitivity("digits-cnn")
    at.text_input(key=key("levels", "digits-cnn")).set_value("0, 50, 90").run()
    button(at, "Run scan").click().run()
    at.segmented_control(key=key("kind", "digits-cnn")).set_value("drop").run()
    button(at, "Propose budgets").click().run()
    assert not at.exception, [e.value for e in at.exception]
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    proposals = solve_budget(bench, scan(bench, LEVELS), max_drop=0.02, metric="accuracy")
    best = next(p for p in proposals if p.recommended)
    assert best.measured_drop <= 0.02 + 1e-12
    assert metric_values(at, "Measured accuracy") == [f"{p.measured:.2%}" for p in proposals]
    titles = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert [("Recommended" in t) for t in titles] == [p.recommended for p in proposals]
    applies = [b for b in at.button if b.label == "Apply on the Prune page"]
    assert [b.proto.type for b in applies] == [
        "primary" if p.recommended else "secondary" for p in proposals
    ]
    assert not any("above the max drop" in w.value for w in at.warning)
    assert at.checkbox(key=key("whole-layers", "digits-cnn")).value is False


def test_stop_abandons_the_scan_and_leaves_the_page_usable(monkeypatch) -> None:
    """A click on Stop reruns the page mid-scan. AppTest cannot click during a run, so the
    scan ends its run itself after its first point, as the rerun would; then Stop is clicked."""
    import streamlit as st

    from ui.sensitivity import scan as section

    real = section.iter_scan

    def one_point_then_the_click(*args, **kwargs):
        events = real(*args, **kwargs)
        yield next(events)
        st.stop()  # the run ends here, with the bar and its Stop button on the page

    monkeypatch.setattr(section, "iter_scan", one_point_then_the_click)
    at = open_sensitivity("digits-mlp")
    at.text_input(key=key("levels", "digits-mlp")).set_value("0, 50").run()
    button(at, "Run scan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.get("progress"), "the running scan draws its bar"
    button(at, "Stop").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("Scan stopped; nothing was kept." in t.value for t in at.toast)
    assert button(at, "Run scan").disabled is False  # nothing was cached
    assert not [b for b in at.button if b.label == "Stop"]
    assert not at.get("progress")
    assert not [d for d in at.dataframe if "level" in d.value.columns]
    assert any("Press **Run scan**" in i.value for i in at.info)
