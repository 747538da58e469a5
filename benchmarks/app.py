"""Slider-to-number round trip in a real browser: the Prune page against Streamlit's floor.

For each workload, a real Streamlit server and headless Chromium: focus a layer's slider, press
ArrowRight, and time until the page shows the new non-zero count (rendered in the same update
as the accuracy card). The floor is the same round trip on a page with one slider and one
number. On the scale ResNet (issue 17 #2) each press is timed three ways: the first number on
screen (the exact sizes), the first accuracy (an estimate when the exact evaluation is slow)
and the exact accuracy (no estimate marker, nothing coming), against the floor and against the
bound (the forward pass after the layer, `SuffixForward`, timed in this process); then a burst of
ten presses on `stem.0` until its exact numbers settle, against one press's exact time.
`--sessions N`: N browser sessions on digits-cnn pressing at once, against one alone.
Run: .venv/bin/python benchmarks/app.py [--quick] [--sessions N]
"""

from __future__ import annotations

import argparse
import os
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

import workbench as wb  # noqa: E402
from benchmarks.common import SuffixForward  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM_ARGS,
    install_idle_tracker,
    start_streamlit,
    wait_for_app,
)

SCALE_LAYERS = ["stem.0", "layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv2", "fc"]
BURST = 10  # key presses in a burst

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


# Marks, in the page's own clock (Date.now(), the machine's), when the new sizes, the first
# accuracy and the exact accuracy (no "≈", no bar saying exact numbers are coming) are on screen.
WATCH_JS = """([sizes, accuracy, wanted]) => {
    const value = (label) => {
        for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
            const l = m.querySelector('[data-testid="stMetricLabel"]');
            const v = m.querySelector('[data-testid="stMetricValue"]');
            if (l && v && l.innerText.trim() === label) return v.innerText;
        }
        return null;
    };
    const marks = window.__marks = {};
    const tick = () => {
        const now = Date.now(), nz = value("Non-zero params"), acc = value("Accuracy");
        if (!marks.first && nz !== null && nz !== sizes && (wanted === null || nz === wanted))
            marks.first = now;
        if (marks.first && !marks.metrics && acc !== null) marks.metrics = now;
        if (marks.first && !marks.estimated && acc !== null && acc.startsWith("≈"))
            marks.estimated = now;
        if (marks.first && !marks.exact && acc !== null && !acc.startsWith("≈")
            && !document.querySelector('[data-testid="stProgress"]')) marks.exact = now;
        if (!marks.exact) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
}"""


def watch(page: Page, wanted: str | None = None) -> None:
    page.evaluate(WATCH_JS, [card_text(page, "Non-zero params"), "", wanted])


def marks(page: Page, pressed: float) -> dict[str, float]:
    """Seconds from the press to each mark, once the exact numbers are on screen."""
    page.wait_for_function("() => Boolean(window.__marks && window.__marks.exact)",
                           polling=100, timeout=600_000)  # fmt: skip
    found = page.evaluate("() => window.__marks")
    return {k: v / 1000 - pressed for k, v in found.items()}


def progressive(page: Page, layer: str, steps: int) -> list[dict[str, float]]:
    """Each press's marks on one slider (the page waits for its exact numbers each time)."""
    slider = page.get_by_role("slider", name=re.compile(rf"^{re.escape(layer)} ·"))
    out = []
    for _ in range(steps):
        watch(page)
        slider.focus()
        pressed = time.time()
        slider.press("ArrowRight")
        out.append(marks(page, pressed))
        wait_for_app(page, timeout_ms=600_000)
    return out


def burst(page: Page, url: str, bench: wb.Workbench, layer: str) -> dict[str, float]:
    """BURST presses at once on a fresh (dense) session; marks of the last value's numbers."""
    page.goto(f"{url}/prune?demo=scale-resnet")
    wait_for_app(page, timeout_ms=600_000)
    slider = page.get_by_role("slider", name=re.compile(rf"^{re.escape(layer)} ·"))
    final = BURST / 100
    wanted = f"{bench.size(wb.PruningPlan({layer: final}))['nonzero_params']:,}"
    watch(page, wanted)
    slider.focus()
    pressed = time.time()
    for _ in range(BURST):
        slider.press("ArrowRight")
    found = marks(page, pressed)
    wait_for_app(page, timeout_ms=600_000)
    return found


def sessions(pages: list[Page], layer: str, steps: int) -> list[float]:
    """Seconds from each press to its exact numbers, every page pressing at once."""
    sliders = [p.get_by_role("slider", name=re.compile(rf"^{re.escape(layer)} ·")) for p in pages]
    times = []
    for _ in range(steps):
        pressed = []
        for page, slider in zip(pages, sliders, strict=True):
            watch(page)
            slider.focus()
        for slider in sliders:
            pressed.append(time.time())
            slider.press("ArrowRight")
        for page, start in zip(pages, pressed, strict=True):
            times.append(marks(page, start)["exact"])
        for page in pages:
            wait_for_app(page, timeout_ms=600_000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    parser.add_argument("--sessions", type=int, default=0, help="concurrent sessions on digits-cnn")
    parser.add_argument("--scale-only", action="store_true", help="only the scale ResNet's part")
    args = parser.parse_args()
    steps = 3 if args.quick else 10
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {steps} key presses "
        f"each; load average {os.getloadavg()[0]:.1f} at start"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
            args=CHROMIUM_ARGS,
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        install_idle_tracker(context)
        page = context.new_page()
        page.set_default_timeout(600_000)
        with start_streamlit(ROOT / "benchmarks" / "floor_app.py") as floor:
            page.goto(floor.url)
            wait_for_app(page)
            floor_ms = statistics.median(round_trips(page, re.compile("^Value"), "Result", steps))
            floor_ms *= 1000
        with start_streamlit(ROOT / "app.py") as app:
            if args.sessions:
                concurrent(context, app.url, args.sessions, steps, floor_ms)
            else:
                if not args.scale_only:
                    demos(page, app.url, steps, floor_ms)
                scale(page, app.url, 2 if args.quick else 3, floor_ms)
        browser.close()


def demos(page: Page, url: str, steps: int, floor_ms: float) -> None:
    results = [("floor (1 slider, 1 number)", "-", floor_ms)]
    for demo, layer in WORKLOADS:
        page.goto(f"{url}/prune?demo={demo}")
        wait_for_app(page, timeout_ms=180_000)
        name = re.compile(rf"^{re.escape(layer)} ·")
        times = round_trips(page, name, "Non-zero params", steps)
        results.append((demo, layer, statistics.median(times) * 1000))
    print(f"\n{'workload':30} {'layer':16} {'median ms':>10} {'× floor':>8}")
    for demo, layer, ms in results:
        print(f"{demo:30} {layer:16} {ms:10.0f} {ms / floor_ms:8.2f}")


def scale(page: Page, url: str, steps: int, floor_ms: float) -> None:
    """The scale ResNet: each layer's first number, first accuracy, exact accuracy; a burst."""
    demo = wb.load_demo("scale-resnet")
    bench = wb.Workbench(demo.model, demo.val)
    page.goto(f"{url}/prune?demo=scale-resnet")
    wait_for_app(page, timeout_ms=600_000)
    print(f"\nscale-resnet, median of {steps} presses (s); bound: the forward after the layer")
    print(f"{'layer':16} {'sizes':>7} {'× floor':>8} {'accuracy':>9} {'× floor':>8} "
          f"{'estimate':>8} {'exact':>7} {'bound':>7} {'exact/bound':>11}")  # fmt: skip
    single = None
    for layer in SCALE_LAYERS:
        found = progressive(page, layer, steps)
        value = steps  # percent: each press adds 1 to a slider at 0
        bound = (
            SuffixForward(bench, layer, bench.val_inputs)(wb.PruningPlan({layer: value / 100}))
            / 1000
        )
        first, metrics, exact = (statistics.median(m[k] for m in found)
                                 for k in ("first", "metrics", "exact"))  # fmt: skip
        estimated = sum("estimated" in m for m in found)
        if layer == "stem.0":
            single = exact
        print(f"{layer:16} {first:7.2f} {first * 1000 / floor_ms:8.2f} {metrics:9.2f} "
              f"{metrics * 1000 / floor_ms:8.2f} {estimated:>4}/{steps:<3} {exact:7.2f} "
              f"{bound:7.2f} {exact / bound:11.2f}")  # fmt: skip
    found = burst(page, url, bench, "stem.0")
    print(
        f"\nburst of {BURST} presses on stem.0: settled (exact) after {found['exact']:.2f} s, "
        f"{found['exact'] / single:.2f}× one press's exact time ({single:.2f} s; goal <= 2×)"
    )


def concurrent(context, url: str, n: int, steps: int, floor_ms: float) -> None:
    """n sessions on digits-cnn pressing at once, against one session alone."""
    layer = "classifier.1"
    pages = []
    for _ in range(n):
        # A context (window) each: a page behind another in one window gets no animation
        # frames, so its marks would wait for it to come to the front.
        own = context.browser.new_context(viewport={"width": 1400, "height": 1000})
        install_idle_tracker(own)
        page = own.new_page()
        page.set_default_timeout(600_000)
        page.goto(f"{url}/prune?demo=digits-cnn")
        wait_for_app(page, timeout_ms=180_000)
        pages.append(page)
    alone = statistics.median(sessions(pages[:1], layer, steps))
    together = statistics.median(sessions(pages, layer, steps))
    print(
        f"\ndigits-cnn {layer}, key press to exact numbers (median ms): one session "
        f"{alone * 1000:.0f} ({alone * 1000 / floor_ms:.2f}× floor), {n} at once "
        f"{together * 1000:.0f}: {together / alone:.2f}× alone (goal <= 3×)"
    )


if __name__ == "__main__":
    main()
