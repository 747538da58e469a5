"""The Importance page with Streamlit's AppTest: every demo (image, flattened image, signal,
tabular, regression), every attribution method, both other tabs, with a pruned plan."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import workbench as wb
import workbench.explain as ex

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/importance.py"
#: A plan per demo that prunes an input-facing layer hard enough to change some predictions.
PLANS = {
    "digits-cnn": "features.2:0.6",
    "digits-mlp": "fc1:0.8",
    "mnist1d-cnn": "features.0:0.7",
    "tabular-mlp": "net.0:0.8",
    "diabetes-regressor": "net.0:0.8",
}


def open_page(demo: str, query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["demo"] = demo
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(PAGE).run()
    check(at)
    return at


def check(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def tab(at: AppTest, demo: str, label: str) -> None:
    at.session_state[f"imp-tab:{demo}:"] = label
    at.run()
    check(at)


@functools.cache
def bench_of(demo: str) -> wb.Workbench:
    d = wb.load_demo(demo)
    return wb.Workbench(d.model, d.val, class_names=d.meta.class_names)


def plan_of(demo: str) -> wb.PruningPlan:
    layer, _, value = PLANS[demo].rpartition(":")
    return wb.PruningPlan({layer: float(value)})


@pytest.mark.parametrize("demo", wb.list_demos())
def test_every_demo_method_and_tab_renders_with_a_pruned_plan(demo: str) -> None:
    at = open_page(demo, {"sp": PLANS[demo]})
    assert at.title[0].value == "Importance"
    assert charts(at) == 1
    bench, plan = bench_of(demo), plan_of(demo)
    # The table is the core's comparison of the default samples, on the plan from the URL.
    table = at.dataframe[0].value
    assert list(table["index"]) == [0, 1, 2, 3]
    dense = bench.attribute([0, 1, 2, 3])
    pruned = bench.attribute([0, 1, 2, 3], plan=plan)
    torch.testing.assert_close(
        torch.tensor(table["pruned_delta"].to_numpy()), pruned.delta.double(), rtol=1e-3, atol=1e-4
    )
    torch.testing.assert_close(
        torch.tensor(table["dense_delta"].to_numpy()), dense.delta.double(), rtol=1e-3, atol=1e-4
    )

    method = at.selectbox(key=f"imp-method:{demo}:")
    assert method.options == [ex.ATTRIBUTION_METHODS[m].label for m in ex.ATTRIBUTION_METHODS]
    for name in list(ex.ATTRIBUTION_METHODS)[1:]:
        at.selectbox(key=f"imp-method:{demo}:").set_value(name).run()
        check(at)
        assert charts(at) == 1, name
        has_delta = ex.ATTRIBUTION_METHODS[name].has_delta
        assert ("dense_delta" in at.dataframe[0].value) == has_delta

    tab(at, demo, "Layer importance")
    assert charts(at) >= 4  # the layer's channels, all layers, weights, weight importance
    tab(at, demo, "Attribution vs magnitude")
    assert charts(at) >= 2  # which channels each criterion removes, and the curve
    labels = [m.label for m in at.metric]
    assert "Overlap (Jaccard)" in labels and "Removed by both" in labels
    at.run()  # the curve from the cache: its progress bar is replayed, and ends cleared
    check(at)
    assert charts(at) >= 2 and not at.get("progress")


def test_samples_broken_by_the_plan_are_the_ones_shown() -> None:
    at = open_page("digits-cnn", {"sp": "features.2:0.9,classifier.1:0.9"})
    at.button_group(key="imp-mode:digits-cnn:").set_value("Broken by the plan").run()
    check(at)
    bench = bench_of("digits-cnn")
    plan = wb.PruningPlan({"features.2": 0.9, "classifier.1": 0.9})
    expected = ex.broken_by_plan(bench, plan)[:4]
    assert list(at.dataframe[0].value["index"]) == expected
    shown = at.dataframe[0].value
    assert (shown["pruned_prediction"] != shown["label"]).all()
    # Raising the cap shows more of them.
    at.number_input(key="imp-cap:digits-cnn:").set_value(6).run()
    check(at)
    assert list(at.dataframe[0].value["index"]) == ex.broken_by_plan(bench, plan)[:6]


def test_by_class_and_a_dense_plan() -> None:
    at = open_page("digits-cnn", {})
    assert any("prunes nothing yet" in i.value for i in at.info)
    at.button_group(key="imp-mode:digits-cnn:").set_value("By class").run()
    at.selectbox(key="imp-class:digits-cnn:").set_value(7).run()
    check(at)
    shown = at.dataframe[0].value
    assert (shown["label"] == "7").all() and len(shown) == 4
    # With nothing pruned, both maps are the same map.
    assert (shown["similarity"] > 1 - 1e-6).all()


def test_layer_tab_counts_the_channels_the_plan_removes() -> None:
    at = open_page("digits-cnn", {"sp": "features.2:0.5", "gran": "channel"})
    tab(at, "digits-cnn", "Layer importance")
    text = " ".join(m.value for m in at.markdown)
    assert "the plan removes **16** of 32 channels whole" in text
    at.button_group(key="imp-layer-model:digits-cnn:").set_value("Pruned").run()
    check(at)
    at.selectbox(key="imp-layer-method:digits-cnn:").set_value("activation").run()
    check(at)


@pytest.mark.parametrize("method", ["conductance", "gradient_x_activation"])
def test_attribution_criteria_work_on_the_prune_page(method: str) -> None:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(
        {"demo": "digits-cnn", "sp": "features.2:0.5", "method": method, "gran": "channel"}
    )
    at.run()
    at.switch_page("pages/prune.py").run()
    check(at)
    assert at.selectbox(key="method:digits-cnn:").value == method
    plan = wb.PruningPlan({"features.2": 0.5}, method=method, granularity="channel")
    report = bench_of("digits-cnn").evaluate(plan)
    accuracy = next(m.value for m in at.metric if m.label == "Accuracy")
    assert accuracy == f"{report.metrics['accuracy']:.2%}"
    # The page's own slider moves through the attribution criterion too.
    next(s for s in at.slider if s.label.startswith("features.2 ·")).set_value(25).run()
    check(at)
    report = bench_of("digits-cnn").evaluate(plan.with_sparsity("features.2", 0.25))
    assert next(m.value for m in at.metric if m.label == "Accuracy") == (
        f"{report.metrics['accuracy']:.2%}"
    )
