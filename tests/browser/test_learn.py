"""Lesson 1 in a real browser, end to end: set up digits-mlp, prune 90 % by magnitude on the
Prune page, fine-tune on the Recover page, and see each check pass; a screenshot at each step."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .conftest import screenshot, wait_for_app
from .test_upload import go_to


def lesson_step_done(page: Page, name: str) -> str:
    go_to(page, "Learn")
    wait_for_app(page)
    done = page.get_by_test_id("stAlertContentSuccess")
    done.wait_for(state="visible")
    screenshot(page, name)
    return done.inner_text()


def test_lesson_one_end_to_end(page: Page, streamlit_server: str) -> None:
    page.goto(f"{streamlit_server}/learn")
    wait_for_app(page)
    screenshot(page, "learn-0-primer")
    page.get_by_role("button", name=re.compile("Start")).first.click()
    wait_for_app(page)
    page.get_by_role("button", name=re.compile("Set it up")).click()
    wait_for_app(page)
    assert "dense accuracy of 96.94%" in lesson_step_done(page, "learn-1-meet-the-model")
    page.get_by_role("button", name=re.compile("Next")).click()
    wait_for_app(page)

    go_to(page, "Prune")
    wait_for_app(page)
    page.get_by_text("global", exact=True).click()
    wait_for_app(page)
    slider = page.get_by_role("slider", name=re.compile("All unlocked layers"))
    slider.focus()
    slider.press("End")  # 100 %, then back to 90 % one step at a time
    wait_for_app(page)
    while int(slider.input_value()) > 90:  # a press during a rerun may be dropped: re-read
        slider.press("ArrowLeft")
        wait_for_app(page)
    assert slider.input_value() == "90"
    screenshot(page, "learn-2-prune-page")
    text = lesson_step_done(page, "learn-2-pruned")
    assert "fell from 96.94% to" in text
    page.get_by_role("button", name=re.compile("Next")).click()
    wait_for_app(page)

    go_to(page, "Recover")
    wait_for_app(page)
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill("2")
    epochs.press("Enter")
    page.get_by_role("button", name=re.compile("Start")).click()
    recovered = page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(r"^\s*Recovered"))
    recovered.first.wait_for(state="visible", timeout=180_000)
    wait_for_app(page)
    screenshot(page, "learn-3-recover-page")
    text = lesson_step_done(page, "learn-3-recovered")
    assert "back to" in text
    expect(page.get_by_role("button", name=re.compile("Finish"))).to_be_enabled()
    page.get_by_role("button", name=re.compile("Finish")).click()
    wait_for_app(page)
