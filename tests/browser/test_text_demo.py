"""The real pretrained text demo (minilm-topics, 22.7M parameters) in a real browser: the
Weights page draws all 37 layers, the Prune page cuts attention heads as groups with the API's
numbers, and the Sensitivity page scans it."""

from __future__ import annotations

from playwright.sync_api import Page

import workbench as wb

from .conftest import card, screenshot, wait_for_app

DEMO = "minilm-topics"
QUERY = "encoder.model.encoder.layer.5.attention.self.query"


def _open(page: Page, server: str, path: str) -> None:
    # A fresh server runs a deep link's page file alone until the entry point has run once
    # (Streamlit issue #9624): open the app first.
    page.goto(f"{server}/?demo={DEMO}")
    wait_for_app(page, timeout_ms=180_000)
    page.goto(f"{server}/{path}")
    wait_for_app(page, timeout_ms=180_000)
    assert page.get_by_test_id("stException").count() == 0


def test_the_weights_page_draws_every_layer(page: Page, streamlit_server: str) -> None:
    _open(page, streamlit_server, f"weights?demo={DEMO}")
    main = page.get_by_test_id("stMain")
    main.get_by_role("heading", name="All layers").wait_for()
    assert main.get_by_text("encoder.model.encoder.layer.5.output.dense").count() >= 1
    screenshot(page, "text-weights")


def test_the_prune_page_cuts_heads_with_the_apis_numbers(page: Page, streamlit_server) -> None:
    _open(page, streamlit_server, f"prune?demo={DEMO}&gran=group&sp={QUERY}:0.5")
    main = page.get_by_test_id("stMain")
    main.get_by_text("Leads a group of 12 heads: key, value lose the same heads").first.wait_for()
    demo = wb.load_demo(DEMO)
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    plan = wb.PruningPlan({QUERY: 0.5}, granularity="group")
    assert card(page, "Accuracy") == f"{bench.evaluate(plan).metrics['accuracy']:.2%}"
    assert card(page, "Compacted params") == f"{wb.compact(bench, plan).params:,}"
    screenshot(page, "text-prune-heads")


def test_the_sensitivity_page_scans_it(page: Page, streamlit_server: str) -> None:
    _open(page, streamlit_server, f"sensitivity?demo={DEMO}")
    main = page.get_by_test_id("stMain")
    levels = main.get_by_role("textbox", name="Levels (% of each layer removed)")
    levels.fill("50")
    levels.press("Enter")
    wait_for_app(page, timeout_ms=120_000)
    samples = main.get_by_role("spinbutton", name="Samples")
    samples.fill("64")
    samples.press("Enter")
    wait_for_app(page, timeout_ms=120_000)
    main.get_by_role("button", name="Run scan").click()
    wait_for_app(page, timeout_ms=240_000)
    main.get_by_text("Scan ready").first.wait_for(timeout=60_000)
    assert page.get_by_test_id("stException").count() == 0
    screenshot(page, "text-sensitivity")
