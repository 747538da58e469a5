"""The Importance page in a real browser: dense and pruned attribution maps of a pruned plan."""

from __future__ import annotations

import re

from playwright.sync_api import Page

import workbench as wb

from .conftest import screenshot, wait_for_app


def open_importance(page: Page, server: str, query: str) -> None:
    # A fresh server runs a deep link's page file alone (legacy pages/ discovery) until the
    # entry point has run once, so open the app first (Streamlit issue #9624).
    page.goto(server)
    wait_for_app(page, timeout_ms=120_000)
    page.goto(f"{server}/importance?{query}")
    wait_for_app(page, timeout_ms=120_000)


def test_importance_page_shows_dense_and_pruned_maps(page: Page, streamlit_server: str) -> None:
    open_importance(page, streamlit_server, "demo=digits-cnn&sp=features.2:0.6")
    main = page.get_by_test_id("stMain")
    page.get_by_role("heading", name="Importance").wait_for()
    chart = main.get_by_test_id("stPlotlyChart").first
    chart.wait_for(state="visible")
    # One row per sample: the input, the dense map and the pruned map, titled with predictions.
    titles = chart.locator(".annotation-text").all_text_contents()
    assert any(t.startswith("dense:") for t in titles), titles
    assert any(t.startswith("pruned:") for t in titles), titles
    assert sum(t.startswith("#") for t in titles) == 4  # the four default samples
    # Each row: the input plus two attribution heatmaps (and the input's outline over each).
    assert chart.locator("g.heatmaplayer image, g.heatmaplayer .hm").count() >= 12
    text = main.inner_text()
    assert "Integrated Gradients" in text
    assert "Captum documentation" in text
    assert re.search(r"features\.2|1 layer\(s\) pruned", text)
    # The plan in the URL is the one explained: the caption quotes its exact accuracy.
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    report = bench.evaluate(wb.PruningPlan({"features.2": 0.6}))
    assert f"{report.metrics['accuracy']:.2%}" in text
    screenshot(page, "importance-page")


def test_importance_layer_tab_marks_removed_channels(page: Page, streamlit_server: str) -> None:
    open_importance(page, streamlit_server, "demo=digits-cnn&sp=features.2:0.5&gran=channel")
    page.get_by_role("tab", name="Layer importance").click()
    wait_for_app(page, timeout_ms=120_000)
    main = page.get_by_test_id("stMain")
    main.get_by_test_id("stPlotlyChart").nth(2).wait_for(state="visible")
    assert "the plan removes 16 of 32 channels" in main.inner_text()
    screenshot(page, "importance-layers")
