"""Recovery in a real browser: a short fine-tune of digits-mlp at 90 % global pruning, from the
deep link to the recovered accuracy card, with a screenshot of the result."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

import workbench as wb
from workbench.plots._format import format_metric

from .conftest import screenshot, wait_for_app

PLAN = "sp=fc1:0.9,fc2:0.9,fc3:0.9&scope=global"


def card(page: Page, label: str) -> str:
    metric = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^\s*{label}"))
    )
    return metric.get_by_test_id("stMetricValue").inner_text().strip()


def test_a_short_recovery_shows_the_recovered_accuracy(page: Page, streamlit_server: str) -> None:
    page.goto(f"{streamlit_server}/recover?demo=digits-mlp&{PLAN}")
    wait_for_app(page)
    expect(page.get_by_text("one-shot accuracy", exact=False)).to_be_visible()
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill("2")
    epochs.press("Enter")
    page.get_by_role("button", name=re.compile("Start")).click()
    recovered = page.get_by_test_id("stMetricLabel").filter(has_text=re.compile("^\\s*Recovered"))
    recovered.first.wait_for(state="visible", timeout=180_000)
    wait_for_app(page)
    screenshot(page, "recover-digits-mlp")
    page.get_by_text("Every run on this plan").scroll_into_view_if_needed()
    screenshot(page, "recover-digits-mlp-results")

    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.9, scope="global")
    run = wb.finetune(bench, plan, demo.train, epochs=2, lr=3e-3, batch_size=32)
    assert card(page, "Recovered") == format_metric("accuracy", run.report.metrics["accuracy"])
    assert card(page, "One-shot") == format_metric(
        "accuracy", bench.evaluate(plan).metrics["accuracy"]
    )
