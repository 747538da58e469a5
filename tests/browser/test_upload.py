"""Bring your own model in a real browser: upload a .pt2 program and a CSV, use it, prune it."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import workbench as wb
from tests.helpers import Touch, tabular_files

from .conftest import card, card_value, screenshot, wait_for_app


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tabular demo exported as a user would: a torch.export program and a validation CSV."""
    return tabular_files(tmp_path_factory.mktemp("upload"))


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("tabular-mlp")
    return wb.Workbench(demo.model, demo.val)


def open_load_page(page: Page, server: str) -> None:
    # A fresh server runs a deep link's page file alone (legacy pages/ discovery) until the
    # entry point has run once, so open the app first (Streamlit issue #9624).
    page.goto(server)
    wait_for_app(page, timeout_ms=120_000)
    page.goto(f"{server}/load")
    wait_for_app(page)
    page.get_by_role("heading", name="Load your model").wait_for()


def go_to(page: Page, title: str) -> None:
    """Client-side navigation by the sidebar's page link, as a person clicks it."""
    # A link's text is its icon's ligature then the title, with no space between.
    links = page.get_by_test_id("stSidebar").get_by_role("link")
    links.filter(has_text=re.compile(rf"{re.escape(title)}$")).first.click()


def upload(page: Page, index: int, path: Path) -> None:
    uploader = page.get_by_test_id("stFileUploader").nth(index)
    uploader.locator('input[type="file"]').set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for(state="visible")
    wait_for_app(page)


def test_upload_a_pt2_and_a_csv_and_prune_it(
    page: Page, streamlit_server: str, files: dict[str, Path], bench: wb.Workbench
) -> None:
    open_load_page(page, streamlit_server)
    upload(page, 0, files["model"])
    upload(page, 1, files["data"])
    main = page.get_by_test_id("stMain")
    assert "torch.export program (.pt2), 4,130 parameters" in main.inner_text()
    assert "113 validation samples of 30 (tabular)" in main.inner_text()
    assert not page.get_by_test_id("stAlertContentError").count()
    assert page.get_by_role("button", name="Use this model").is_enabled()  # every check passed
    screenshot(page, "load-page")
    page.get_by_role("button", name="Use this model").scroll_into_view_if_needed()
    screenshot(page, "load-page-checks")

    page.get_by_role("button", name="Use this model").click()
    wait_for_app(page)
    page.get_by_role("heading", name="breast-cancer-mlp.pt2 (yours)").wait_for()
    assert card(page, "Accuracy") == f"{bench.dense_metrics['accuracy']:.2%}"
    assert "demo=yours-breast-cancer-mlp" in page.url

    # Client-side navigation keeps the session (and its uploaded model).
    go_to(page, "Prune")
    wait_for_app(page)
    slider = page.get_by_role("slider", name=re.compile(r"^net\.0 ·"))
    slider.focus()
    for _ in range(25):
        slider.press("ArrowRight")
    # The slider reruns the app once its key presses settle: wait for that value, then the run.
    expect(page.get_by_role("slider", name=re.compile(r"^net\.0 ·"))).to_have_value("25")
    wait_for_app(page)
    report = bench.evaluate(wb.PruningPlan({"net.0": 0.25}))
    assert report.size["nonzero_params"] < bench.dense_size["nonzero_params"]
    expect(card_value(page, "Non-zero params")).to_have_text(f"{report.size['nonzero_params']:,}")
    assert card(page, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
    assert card(page, "Loss") == f"{report.metrics['loss']:.4f}"
    screenshot(page, "upload-prune")


def test_a_bad_upload_shows_a_message_not_a_traceback(
    page: Page, streamlit_server: str, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.pt2"
    bad.write_text("not a model at all\n")
    open_load_page(page, streamlit_server)
    upload(page, 0, bad)
    error = page.get_by_test_id("stAlertContentError").first.inner_text()
    assert "not a model file we read" in error and "found text starting" in error
    assert not page.get_by_test_id("stException").count()
    screenshot(page, "load-page-error")
    go_to(page, "Model")
    wait_for_app(page)
    assert card(page, "Accuracy") == "98.05%"  # the app goes on with the default demo


def test_a_default_server_offers_no_local_code_and_refuses_a_hostile_pt2(
    page: Page, streamlit_server: str, files: dict[str, Path], tmp_path: Path
) -> None:
    open_load_page(page, streamlit_server)
    main = page.get_by_test_id("stMain")
    # Served as `make run` serves it: no paths on the server, no architecture files, no trust.
    for control in ("Path on this machine", "Architecture, for a weights file", "I trust this"):
        assert control not in main.inner_text(), control
    # A .pt2 whose sample inputs are a pickle that would create a file, named with a shortcode.
    marker = tmp_path / "PWNED"
    hostile = tmp_path / "evil:x:.pt2"
    with zipfile.ZipFile(files["model"]) as src, zipfile.ZipFile(hostile, "w") as dst:
        for name in src.namelist():
            payload = src.read(name)
            if name.endswith("data/sample_inputs/model.pt"):
                payload = b"N0" + pickle.dumps(Touch(marker), protocol=2)
            dst.writestr(name, payload)
    upload(page, 0, hostile)
    error = page.get_by_test_id("stAlertContentError").first.inner_text().replace("\u200b", "")
    assert "pickled Python objects" in error and "evil:x:.pt2" in error, error
    assert not page.get_by_test_id("stException").count()
    assert not marker.exists()
    screenshot(page, "load-page-hostile")
    go_to(page, "Model")
    wait_for_app(page)
    assert card(page, "Accuracy") == "98.05%"  # the app goes on
