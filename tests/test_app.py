"""Headless tests of every page with Streamlit's AppTest: no browser, real app code."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import workbench as wb

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["pages/model.py", "pages/weights.py", "pages/prune.py"]


def open_page(page: str, demo: str = "digits-cnn", query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["demo"] = demo
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_section(at: AppTest, kind: str, demo: str = "digits-cnn") -> AppTest:
    """Open a keyed expander of the page ("ship-open", "runs-open"): its content is drawn only
    while it is open (AppTest cannot click an expander)."""
    at.session_state[f"{kind}:{demo}:"] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def layer_slider(at: AppTest, layer: str):
    return next(s for s in at.slider if s.label.startswith(f"{layer} ·"))


@pytest.fixture(scope="module")
def benches() -> dict[str, wb.Workbench]:
    out = {}
    for name in wb.list_demos():
        demo = wb.load_demo(name)
        out[name] = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    return out


@pytest.mark.parametrize("demo", wb.list_demos())
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_for_every_demo(page: str, demo: str) -> None:
    at = open_page(page, demo)
    assert not at.error, [e.value for e in at.error]
    assert at.title, "every page has a title"


def test_model_page_shows_dense_metrics_and_layers(benches) -> None:
    at = open_page("pages/model.py")
    bench = benches["digits-cnn"]
    assert metric(at, "Accuracy") == f"{bench.dense_metrics['accuracy']:.2%}"
    table = at.dataframe[0].value
    assert list(table["name"]) == bench.layer_names


def test_slider_change_shows_exact_evaluation(benches) -> None:
    at = open_page("pages/prune.py")
    layer_slider(at, "features.2").set_value(70).run()
    report = benches["digits-cnn"].evaluate(wb.PruningPlan({"features.2": 0.7}))
    assert metric(at, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
    assert metric(at, "Non-zero params") == f"{report.size['nonzero_params']:,}"
    assert at.query_params["sp"] == "features.2:0.7"


def test_plan_in_url_restores_sliders(benches) -> None:
    at = open_page("pages/prune.py", query={"sp": "features.0:0.3,classifier.1:0.9"})
    assert layer_slider(at, "features.0").value == 30
    assert layer_slider(at, "classifier.1").value == 90
    plan = wb.PruningPlan({"features.0": 0.3, "classifier.1": 0.9})
    report = benches["digits-cnn"].evaluate(plan)
    assert metric(at, "Accuracy") == f"{report.metrics['accuracy']:.2%}"


def test_plan_survives_moving_between_pages() -> None:
    at = open_page("pages/prune.py")
    layer_slider(at, "classifier.1").set_value(55).run()
    at.switch_page("pages/weights.py").run()
    at.switch_page("pages/prune.py").run()
    assert layer_slider(at, "classifier.1").value == 55


def test_global_slider_skips_locked_layers_and_reset_restores_dense(benches) -> None:
    at = open_page("pages/prune.py")
    at.multiselect(key="locks:digits-cnn:").select("features.0").run()
    next(s for s in at.slider if "All unlocked layers" in s.label).set_value(40).run()
    assert layer_slider(at, "features.0").value == 0
    assert all(layer_slider(at, n).value == 40 for n in ("features.2", "classifier.1"))
    next(b for b in at.button if b.label == "Reset to dense").click().run()
    assert all(layer_slider(at, n).value == 0 for n in benches["digits-cnn"].layer_names)
    dense = benches["digits-cnn"].dense_metrics["accuracy"]
    assert metric(at, "Accuracy") == f"{dense:.2%}"


def test_layer_at_100_percent(benches) -> None:
    at = open_page("pages/prune.py")
    layer_slider(at, "classifier.3").set_value(100).run()
    assert not at.exception
    report = benches["digits-cnn"].evaluate(wb.PruningPlan({"classifier.3": 1.0}))
    assert metric(at, "Accuracy") == f"{report.metrics['accuracy']:.2%}"


def test_regression_demo_prunes_and_shows_r2(benches) -> None:
    at = open_page("pages/prune.py", demo="diabetes-regressor")
    layer_slider(at, "net.0").set_value(50).run()
    report = benches["diabetes-regressor"].evaluate(wb.PruningPlan({"net.0": 0.5}))
    assert metric(at, "R²") == f"{report.metrics['r2']:.4f}"
    assert not at.exception


@pytest.mark.parametrize("granularity", list(wb.GRANULARITIES))
def test_every_granularity_and_global_scope(granularity: str) -> None:
    at = open_page(
        "pages/prune.py", query={"sp": "features.2:0.5", "gran": granularity, "scope": "global"}
    )
    assert not at.exception
    assert at.selectbox(key="granularity:digits-cnn:").value == granularity


def test_unstructured_plan_warns_that_zeros_are_not_speed() -> None:
    at = open_page("pages/prune.py", query={"sp": "features.2:0.5"})
    assert any("Zeros are not speed" in i.value for i in at.info)
    at = open_page("pages/prune.py", query={"sp": "features.2:0.5", "gran": "channel"})
    assert not any("Zeros are not speed" in i.value for i in at.info)


def test_malformed_url_plan_is_ignored() -> None:
    at = open_page("pages/prune.py", query={"sp": "nonsense:abc", "method": "nope"})
    assert not at.exception
    assert layer_slider(at, "features.0").value == 0


@pytest.mark.parametrize("demo", ["digits-cnn", "diabetes-regressor"])
def test_every_view_of_the_prune_page_renders(demo: str) -> None:
    at = open_page("pages/prune.py", demo=demo, query={"sp": f"{'net.0' if 'diab' in demo else 'features.2'}:0.5"})
    view = at.button_group(key=f"view:{demo}:")
    for option in ("Last layer touched", "Per class", "Layers"):
        view.set_value(option).run()
        assert not at.exception, [e.value for e in at.exception]
    if demo == "diabetes-regressor":
        view.set_value("Per class").run()
        assert any("Regression model" in c.value for c in at.caption)


def test_clearing_the_scope_keeps_the_plan() -> None:
    """A second click on the chosen scope clears the control; the plan keeps its scope (a None
    scope once crashed the page) and the control shows it again."""
    at = open_page("pages/prune.py")
    scope = next(c for c in at.segmented_control if c.label == "Scope")
    scope.set_value("global").run()
    next(c for c in at.segmented_control if c.label == "Scope").set_value(None).run()
    assert not at.exception, [e.value for e in at.exception]
    assert next(c for c in at.segmented_control if c.label == "Scope").value == "global"
    assert at.session_state["plans"]["digits-cnn"].scope == "global"


def test_the_report_notes_are_on_the_page() -> None:
    # a channel plan on the output layer leaves it dense: the page says so
    at = open_page("pages/prune.py", query={"sp": "classifier.3:0.5", "gran": "channel"})
    assert any("output layer" in c.value for c in at.caption)
