"""The Importance page on the real text demo in a browser: token heatmaps of minilm-topics."""

from __future__ import annotations

from playwright.sync_api import Page

import workbench as wb

from .conftest import screenshot, wait_for_app
from .test_importance import open_importance

LAYER = "encoder.model.encoder.layer.0.intermediate.dense"


def test_importance_page_shows_token_heatmaps(page: Page, streamlit_server: str) -> None:
    open_importance(page, streamlit_server, f"demo=minilm-topics&sp={LAYER}:0.5")
    main = page.get_by_test_id("stMain")
    page.get_by_role("heading", name="Importance").wait_for()
    chart = main.get_by_test_id("stPlotlyChart").first
    chart.wait_for(state="visible", timeout=300_000)
    wait_for_app(page, timeout_ms=300_000)
    # Per sample a dense and a pruned block of heatmap cells, titled with each prediction.
    titles = chart.locator(".annotation-text").all_text_contents()
    assert sum(t.startswith("#") for t in titles) == 4, titles  # the four default samples
    assert sum(t.startswith("pruned:") for t in titles) == 4, titles
    assert chart.locator("g.heatmaplayer").count() >= 1
    # The cells carry the decoded tokens of the first sample, [CLS] to [SEP].
    demo = wb.load_demo("minilm-topics")
    ids = demo.val.tensors[0][0]
    tokens = demo.tokenizer.tokens(ids[ids != demo.tokenizer.pad_token_id])
    drawn = chart.inner_text()
    assert tokens[0] == "[CLS]" and "[CLS]" in drawn and "[SEP]" in drawn
    assert all(t in drawn for t in tokens[1:4]), (tokens[:4], drawn[:300])
    text = main.inner_text()
    assert "Input × Gradient" in text and "input embeddings" in text
    page.set_viewport_size({"width": 1400, "height": 2000})
    chart.scroll_into_view_if_needed()
    screenshot(page, "importance-text")
