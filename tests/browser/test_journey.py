"""The user's journey in a real browser: choose a model, prune it by keyboard, reload, compare."""

from __future__ import annotations

import re
import urllib.request

import pytest
from playwright.sync_api import Browser, Page

import workbench as wb

from .conftest import card, install_idle_tracker, layer_slider, screenshot, wait_for_app


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


def drag_by_keyboard(page: Page, layer: str, presses: int) -> int:
    slider = layer_slider(page, layer)
    slider.focus()
    for _ in range(presses):
        slider.press("ArrowRight")
    wait_for_app(page)
    return int(layer_slider(page, layer).input_value())


def test_choose_a_demo_and_see_its_metrics(page: Page, streamlit_server: str) -> None:
    page.goto(streamlit_server)
    wait_for_app(page)
    assert card(page, "Accuracy") == "98.05%"
    page.get_by_test_id("stSidebar").get_by_role("combobox").click()
    page.get_by_role("option", name=re.compile("^mnist1d-cnn")).click()
    wait_for_app(page)
    meta = wb.load_demo("mnist1d-cnn").meta
    assert card(page, "Accuracy") == f"{meta.dense_metrics['accuracy']:.2%}"
    assert "demo=mnist1d-cnn" in page.url
    screenshot(page, "model-page")


def test_keyboard_slider_gives_exact_numbers_and_survives_reload(
    page: Page, streamlit_server: str, bench: wb.Workbench
) -> None:
    page.goto(f"{streamlit_server}/prune?demo=digits-cnn")
    wait_for_app(page)
    value = drag_by_keyboard(page, "features.2", 7)
    assert value == 7
    report = bench.evaluate(wb.PruningPlan({"features.2": value / 100}))
    assert card(page, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
    assert card(page, "Non-zero params") == f"{report.size['nonzero_params']:,}"
    screenshot(page, "prune-page")

    page.reload()
    wait_for_app(page)
    assert int(layer_slider(page, "features.2").input_value()) == value
    assert card(page, "Non-zero params") == f"{report.size['nonzero_params']:,}"


def test_two_sessions_keep_their_own_plans(
    browser: Browser, streamlit_server: str, bench: wb.Workbench
) -> None:
    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        install_idle_tracker(context)
        pages.append(context.new_page())
    first, second = pages
    for p in pages:
        p.goto(f"{streamlit_server}/prune?demo=digits-cnn")
        wait_for_app(p)
    drag_by_keyboard(first, "classifier.1", 9)
    drag_by_keyboard(second, "features.0", 4)
    for p, plan in (
        (first, wb.PruningPlan({"classifier.1": 0.09})),
        (second, wb.PruningPlan({"features.0": 0.04})),
    ):
        p.reload()
        wait_for_app(p)
        report = bench.evaluate(plan)
        assert card(p, "Non-zero params") == f"{report.size['nonzero_params']:,}"
    for p in pages:
        p.context.close()


def test_weights_page_draws_histograms_and_map(page: Page, streamlit_server: str) -> None:
    page.goto(f"{streamlit_server}/weights?demo=digits-cnn&sp=features.2:0.6")
    wait_for_app(page)
    charts = page.get_by_test_id("stPlotlyChart")
    charts.nth(2).wait_for(state="visible")  # detail histogram, weight map, all-layer grid
    assert "features.2" in page.get_by_test_id("stMain").inner_text()
    screenshot(page, "weights-page")


def test_server_health(streamlit_server: str) -> None:
    with urllib.request.urlopen(f"{streamlit_server}/_stcore/health", timeout=10) as response:
        assert response.read().decode() == "ok"
