"""Experiments in a real browser: keep three plans on Prune, compare two on History, and click
a point of the Pareto frontier onto the sliders. The server keeps its runs in a temporary
WORKBENCH_DATA_DIR, never the project's."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

import workbench as wb

from .conftest import layer_slider, screenshot, wait_for_app

PLANS = ("features.2:0.5", "features.2:0.9,classifier.1:0.9", "classifier.1:0.95")


@pytest.fixture(scope="module")
def server(streamlit_factory, tmp_path_factory) -> str:
    data = tmp_path_factory.mktemp("browser-runs")
    return streamlit_factory("app.py", env={"WORKBENCH_DATA_DIR": str(data)}).url


def card(page: Page, label: str):
    return page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^\s*{label}\s*$"))
    )


def test_keep_three_compare_two_and_click_the_frontier(page: Page, server: str) -> None:
    for number, plan in enumerate(PLANS, start=1):
        page.goto(f"{server}/prune?demo=digits-cnn&sp={plan}")
        wait_for_app(page)
        page.get_by_role("button", name=re.compile("Keep")).click()
        wait_for_app(page)
        expect(page.get_by_text(f"Kept runs ({number})")).to_be_visible()
    page.get_by_text("Kept runs (3)").click()
    wait_for_app(page)
    screenshot(page, "history-prune-kept-runs")

    page.get_by_role("link", name=re.compile("History")).first.click()
    wait_for_app(page)
    expect(page.get_by_text("Runs (3)")).to_be_visible()
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    reports = [
        bench.evaluate(
            wb.PruningPlan({n: float(v) for n, v in (p.split(":") for p in s.split(","))})
        )
        for s in PLANS
    ]
    # Compare: the newest run (second) against the one before it (first).
    accuracy = card(page, "Accuracy")
    expect(accuracy.get_by_test_id("stMetricValue")).to_have_text(
        f"{reports[2].metrics['accuracy']:.2%}"
    )
    delta = reports[2].metrics["accuracy"] - reports[1].metrics["accuracy"]
    expect(accuracy.get_by_test_id("stMetricDelta")).to_contain_text(f"{abs(delta) * 100:.2f} pp")
    screenshot(page, "history-compare")

    # The frontier's markers are in the runs' order, newest first: the last is the first kept.
    chart = page.get_by_test_id("stPlotlyChart").last
    chart.scroll_into_view_if_needed()
    points = chart.locator(".scatterlayer .trace").nth(1).locator("path.point")
    expect(points).to_have_count(3)
    box = points.nth(2).bounding_box()  # plotly reads clicks off its drag layer, on top
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.get_by_text("its plan is on the Prune page's sliders")).to_be_visible()
    wait_for_app(page)
    screenshot(page, "history-frontier-clicked")
    page.get_by_role("link", name=re.compile("^Prune$")).first.click()
    wait_for_app(page)
    expect(layer_slider(page, "features.2")).to_have_value("50")
    expect(layer_slider(page, "classifier.1")).to_have_value("0")
