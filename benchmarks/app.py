"""Slider-to-number round trip in a real browser: the Prune page against Streamlit's floor.

For each workload, a real Streamlit server and headless Chromium: focus a layer's slider, press
ArrowRight, and time until the page shows the new non-zero count (rendered in the same update
as the accuracy card). The floor is the same round trip on a page with one slider and one
number. Run: .venv/bin/python benchmarks/app.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from tests.browser.conftest import (  # noqa: E402
    CHROMIUM_ARGS,
    install_idle_tracker,
    start_streamlit,
    wait_for_app,
)

WORKLOADS = [  # (demo, layer dragged)
    ("digits-cnn", "classifier.1"),
    ("digits-mlp", "fc2"),
    ("scale-resnet", "fc"),
    ("scale-resnet", "layer4.0.conv2"),
]


def card_text(page: Page, label: str) -> str:
    label_re = re.compile(rf"^\s*{re.escape(label)}\s*$")
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=label_re)
    )
    return card.get_by_test_id("stMetricValue").inner_text()


def round_trips(page: Page, slider_name: re.Pattern, label: str, steps: int) -> list[float]:
    """Seconds from each key press to the changed number on screen."""
    slider = page.get_by_role("slider", name=slider_name)
    times = []
    for _ in range(steps):
        before = card_text(page, label)
        slider.focus()
        start = time.perf_counter()
        slider.press("ArrowRight")
        page.wait_for_function(
            """([label, before]) => {
                for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
                    const l = m.querySelector('[data-testid="stMetricLabel"]');
                    const v = m.querySelector('[data-testid="stMetricValue"]');
                    if (l && v && l.innerText.trim() === label) return v.innerText !== before;
                }
                return false;
            }""",
            arg=[label, before],
            polling="raf",
            timeout=120_000,
        )
        times.append(time.perf_counter() - start)
        wait_for_app(page)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    steps = 3 if parser.parse_args().quick else 10
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {steps} key presses each")
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
            args=CHROMIUM_ARGS,
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        install_idle_tracker(context)
        page = context.new_page()
        page.set_default_timeout(120_000)
        with start_streamlit(ROOT / "benchmarks" / "floor_app.py") as floor:
            page.goto(floor.url)
            wait_for_app(page)
            floor_times = round_trips(page, re.compile("^Value"), "Result", steps)
        floor_ms = statistics.median(floor_times) * 1000
        results.append(("floor (1 slider, 1 number)", "-", floor_ms))
        with start_streamlit(ROOT / "app.py") as app:
            for demo, layer in WORKLOADS:
                page.goto(f"{app.url}/prune?demo={demo}")
                wait_for_app(page, timeout_ms=180_000)
                name = re.compile(rf"^{re.escape(layer)} ·")
                times = round_trips(page, name, "Non-zero params", steps)
                results.append((demo, layer, statistics.median(times) * 1000))
        browser.close()
    print(f"\n{'workload':30} {'layer':16} {'median ms':>10} {'× floor':>8}")
    for demo, layer, ms in results:
        print(f"{demo:30} {layer:16} {ms:10.0f} {ms / floor_ms:8.2f}")


if __name__ == "__main__":
    main()
