"""The Sensitivity page in a real browser: scan, propose budgets, apply one on the Prune page."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

import workbench as wb
from workbench.analysis import solve_budget

from .conftest import card, screenshot, wait_for_app


def test_scan_propose_and_apply_on_the_prune_page(page: Page, streamlit_server: str) -> None:
    # A fresh server runs a deep link's page file alone until the entry point has run once
    # (Streamlit issue #9624): open the app first.
    page.goto(f"{streamlit_server}/?demo=digits-mlp")
    wait_for_app(page, timeout_ms=120_000)
    page.goto(f"{streamlit_server}/sensitivity?demo=digits-mlp")
    wait_for_app(page, timeout_ms=120_000)
    page.get_by_role("heading", name="Sensitivity", exact=True).wait_for()
    page.get_by_role("button", name="Run scan").click()
    wait_for_app(page, timeout_ms=120_000)
    main = page.get_by_test_id("stMain")
    main.get_by_text("Interaction check").first.wait_for()
    expect(main.get_by_role("button", name="Download CSV")).to_be_visible()  # waits for the rerun

    # The oracle: the same scan and budget through the API, on a workbench of its own.
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    equal, uniform, global_ = solve_budget(bench, bench.sensitivity(), target=0.8)
    measured = [
        v.inner_text().strip()
        for v in main.get_by_test_id("stMetric")
        .filter(has=page.get_by_test_id("stMetricLabel").filter(has_text="Measured accuracy"))
        .get_by_test_id("stMetricValue")
        .all()
    ]
    assert measured == [f"{p.measured:.2%}" for p in (equal, uniform, global_)]
    assert equal.measured >= uniform.measured  # the point of the page, on this demo
    screenshot(page, "sensitivity-page")
    # The whole page in one picture: the app scrolls inside its main area, so grow the window.
    page.set_viewport_size({"width": 1400, "height": 3000})
    page.wait_for_timeout(500)  # charts re-lay out to the new size
    screenshot(page, "sensitivity-page-full")
    for tab in ("Heatmap", "Ranking"):
        main.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(500)
        screenshot(page, f"sensitivity-{tab.lower()}")
    page.set_viewport_size({"width": 1400, "height": 1000})

    main.get_by_role("button", name="Apply on the Prune page").first.click()
    wait_for_app(page, timeout_ms=120_000)
    page.get_by_role("heading", name="Prune", exact=True).wait_for()
    assert "/prune" in page.url
    for layer in bench.layer_names:
        slider = page.get_by_role("slider", name=re.compile(rf"^{re.escape(layer)} ·"))
        assert int(slider.input_value()) == round(equal.plan.sparsity.get(layer, 0.0) * 100), layer
    report = bench.evaluate(equal.plan)
    assert card(page, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
    assert report.metrics["accuracy"] == equal.measured
    screenshot(page, "sensitivity-applied-on-prune")


def test_stop_abandons_the_scan_and_keeps_nothing(page: Page, streamlit_server: str) -> None:
    page.goto(f"{streamlit_server}/?demo=mnist1d-cnn")
    wait_for_app(page, timeout_ms=120_000)
    page.goto(f"{streamlit_server}/sensitivity?demo=mnist1d-cnn")
    wait_for_app(page, timeout_ms=120_000)
    main = page.get_by_test_id("stMain")
    main.get_by_role("button", name="Run scan").click()
    main.get_by_test_id("stProgress").wait_for()  # the scan is running
    main.get_by_role("button", name="Stop").click()
    wait_for_app(page, timeout_ms=120_000)
    page.get_by_text("Scan stopped; nothing was kept.").wait_for()
    assert main.get_by_role("button", name="Run scan").is_enabled()  # nothing cached
    assert main.get_by_text("Interaction check").count() == 0
    screenshot(page, "sensitivity-stopped")
