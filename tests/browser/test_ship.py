"""Ship in a real browser: a channel plan's compacted cards, latency measured on demand, every
export downloaded from the Prune page, and the .pt2 loaded back with the same accuracy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import workbench as wb
from tests.helpers import tabular_files

from .conftest import screenshot, wait_for_app
from .test_upload import card, go_to, open_load_page, upload

PLAN = wb.PruningPlan(sparsity={"net.0": 0.5, "net.2": 0.5}, granularity="channel")
QUERY = "demo=tabular-mlp&sp=net.0:0.5,net.2:0.5&gran=channel"


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("tabular-mlp")
    return wb.Workbench(demo.model, demo.val)


def test_ship_downloads_and_the_pt2_loads_back(
    page: Page, streamlit_server: str, bench: wb.Workbench, tmp_path: Path
) -> None:
    page.goto(streamlit_server)
    wait_for_app(page, timeout_ms=120_000)
    page.goto(f"{streamlit_server}/prune?{QUERY}")
    wait_for_app(page)
    assert card(page, "Compacted params") == f"{wb.compact(bench, PLAN).params:,}"

    page.get_by_text("Ship: measured latency and downloads").click()
    page.get_by_role("button", name=re.compile("Measure latency")).click()
    expect(
        page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(r"^\s*compacted\s*$"))
    ).to_be_visible(timeout=120_000)
    wait_for_app(page)
    page.get_by_text("Downloads", exact=True).scroll_into_view_if_needed()
    screenshot(page, "prune-ship")

    saved = {}
    for name in wb.export_formats():
        label = wb.EXPORT_FORMATS[name][1]
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name=label, exact=True).click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        assert path.stat().st_size > 0, name
        saved[name] = path
    assert wb.PruningPlan.from_json(saved["plan"].read_text()) == PLAN
    assert saved["card"].read_text().startswith("# Model card")

    # The YAML plan imported back on a dense Prune page puts the plan on the sliders.
    page.goto(f"{streamlit_server}/prune?demo=tabular-mlp")
    wait_for_app(page)
    assert not page.get_by_test_id("stMetricLabel").filter(has_text="Compacted params").count()
    page.get_by_text("Ship: measured latency and downloads").click()
    page.get_by_test_id("stFileUploader").locator('input[type="file"]').set_input_files(
        str(saved["plan-yaml"])
    )
    wait_for_app(page)
    page.get_by_role("button", name=re.compile("Use this plan")).click()
    wait_for_app(page)
    expect(page.get_by_test_id("stMetricLabel").filter(has_text="Compacted params")).to_be_visible()
    assert "gran=channel" in page.url

    (tmp_path / "data").mkdir()
    data = tabular_files(tmp_path / "data")["data"]
    open_load_page(page, streamlit_server)
    upload(page, 0, saved["pt2"])
    upload(page, 1, data)
    page.get_by_role("button", name="Use this model").click()
    wait_for_app(page)
    go_to(page, "Model")
    wait_for_app(page)
    assert card(page, "Accuracy") == f"{bench.evaluate(PLAN).metrics['accuracy']:.2%}"
