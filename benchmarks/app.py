"""Slider-to-number round trip in a real browser: the Prune page against Streamlit's floor.

For each small demo, a real Streamlit server and headless Chromium: every slider of the Prune
page, the global one ("All unlocked layers") included, on a fresh session: focus it, press
ArrowRight, and time until the page shows the new non-zero count (the count the plan gives,
computed here with `Workbench.size`; rendered in the same update as the accuracy card). The
floor is the same round trip on a page with one slider and one number (goal: every slider
within 2× the floor).

On the larger demos (issue 17 #2), the scale ResNet and the pretrained `minilm-topics`, each
press on a layer's slider and on the global one is timed three ways: the first number on screen
(the exact sizes), the first accuracy (an estimate when the exact evaluation is slow) and the
exact accuracy (no estimate marker, nothing coming), against the floor and against the bound
(the forward pass after the layer, `SuffixForward`, timed in this process; the whole network
for the global slider); then a burst of ten presses on `stem.0` until its exact numbers
settle, against one press's exact time.
`--sessions N`: N browser sessions on digits-cnn pressing at once, against one alone.
Run: .venv/bin/python benchmarks/app.py [--quick] [--sessions N] [--scale-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

import workbench as wb  # noqa: E402
from benchmarks.common import TEXT_DEMO, SuffixForward  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM_ARGS,
    install_idle_tracker,
    start_streamlit,
    wait_for_app,
)

SCALE_LAYERS = ["stem.0", "layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv2", "fc"]
_BLOCK = "encoder.model.encoder.layer.{}.attention.self.query"
TEXT_LAYERS = [_BLOCK.format(0), _BLOCK.format(3), _BLOCK.format(5), "head"]
GLOBAL = "All unlocked layers"  # the global slider's label
BURST = 10  # key presses in a burst
GOAL_FLOOR, GOAL_FIRST = 2.0, 2.5  # × floor: every small demo's sliders; larger demos' first number


def slider_name(layer: str | None) -> re.Pattern:
    """The accessible name of a layer's slider (`None`: the global slider)."""
    return re.compile(rf"^{GLOBAL}" if layer is None else rf"^{re.escape(layer)} ·")


def plan_at(bench: wb.Workbench, layer: str | None, percent: int) -> wb.PruningPlan:
    """The plan after `percent` presses on a fresh session's slider (`None`: the global one,
    which sets every layer)."""
    layers = bench.layer_names if layer is None else [layer]
    return wb.PruningPlan({name: percent / 100 for name in layers})


def card_text(page: Page, label: str) -> str:
    label_re = re.compile(rf"^\s*{re.escape(label)}\s*$")
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").filter(has_text=label_re)
    )
    return card.get_by_test_id("stMetricValue").inner_text()


def round_trips(
    page: Page, slider: re.Pattern, label: str, wanted: Callable[[int], str], steps: int
) -> list[float]:
    """Seconds from each key press to the number `label` showing `wanted(presses so far)`;
    a press that leaves the number as it was (a small layer's 1 % rounds to no weight) is
    not timed."""
    control = page.get_by_role("slider", name=slider)
    times = []
    for press in range(1, steps + 1):
        target = wanted(press)
        changes = card_text(page, label) != target
        control.focus()
        start = time.perf_counter()
        control.press("ArrowRight")
        if changes:
            page.wait_for_function(
                """([label, target]) => {
                    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
                        const l = m.querySelector('[data-testid="stMetricLabel"]');
                        const v = m.querySelector('[data-testid="stMetricValue"]');
                        if (l && v && l.innerText.trim() === label) return v.innerText === target;
                    }
                    return false;
                }""",
                arg=[label, target],
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
    // The sizes are drawn before the metrics: until the run that drew them ends (or shows an
    // estimate), the accuracy card on screen is the previous plan's.
    const finished = () => document.querySelector('[data-testid="stApp"]')
        .getAttribute("data-test-script-state") === "notRunning";
    const tick = () => {
        const now = Date.now(), nz = value("Non-zero params"), acc = value("Accuracy");
        if (!marks.first && nz !== null && nz !== sizes && (wanted === null || nz === wanted))
            marks.first = now;
        const estimated = acc !== null && acc.startsWith("≈");
        const exact = acc !== null && !estimated && finished()
            && !document.querySelector('[data-testid="stProgress"]');
        if (marks.first && !marks.metrics && (estimated || exact)) marks.metrics = now;
        if (marks.first && !marks.estimated && estimated) marks.estimated = now;
        if (marks.first && !marks.exact && exact) marks.exact = now;
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


def progressive(page: Page, layer: str | None, steps: int) -> list[dict[str, float]]:
    """Each press's marks on one slider (the page waits for its exact numbers each time)."""
    slider = page.get_by_role("slider", name=slider_name(layer))
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
    slider = page.get_by_role("slider", name=slider_name(layer))
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
    sliders = [p.get_by_role("slider", name=slider_name(layer)) for p in pages]
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
            floor_ms = statistics.median(
                round_trips(page, re.compile("^Value"), "Result", _floor_number, steps)
            )
            floor_ms *= 1000
        with start_streamlit(ROOT / "app.py") as app:
            if args.sessions:
                concurrent(context, app.url, args.sessions, steps, floor_ms)
            else:
                if not args.scale_only:
                    demos(page, app.url, steps, floor_ms)
                presses = 2 if args.quick else 3
                bench, exact = larger(
                    page, app.url, "scale-resnet", SCALE_LAYERS, presses, floor_ms
                )
                found = burst(page, app.url, bench, "stem.0")
                single = exact["stem.0"]
                print(
                    f"\nburst of {BURST} presses on stem.0: settled (exact) after "
                    f"{found['exact']:.2f} s, {found['exact'] / single:.2f}× one press's exact "
                    f"time ({single:.2f} s; goal <= 2×)"
                )
                if not args.scale_only:
                    larger(page, app.url, TEXT_DEMO, TEXT_LAYERS, presses, floor_ms)
        browser.close()


def _floor_number(press: int) -> str:
    """What the floor page shows after `press` presses."""
    return f"{2 * press:,}"


def demos(page: Page, url: str, steps: int, floor_ms: float) -> None:
    """Every slider of every small demo, each on a fresh session, against the floor."""
    print(f"\nfloor (1 slider, 1 number): {floor_ms:.0f} ms")
    print(f"{'demo':20} {'slider':22} {'presses':>7} {'median ms':>10} {'× floor':>8}")
    worst = 0.0
    for demo in wb.list_demos():
        loaded = wb.load_demo(demo)
        bench = wb.Workbench(loaded.model, loaded.val)
        for layer in [None, *bench.layer_names]:
            page.goto(f"{url}/prune?demo={demo}")
            wait_for_app(page, timeout_ms=180_000)

            def nonzero(press: int, bench: wb.Workbench = bench, layer: str | None = layer) -> str:
                return f"{bench.size(plan_at(bench, layer, press))['nonzero_params']:,}"

            times = round_trips(page, slider_name(layer), "Non-zero params", nonzero, steps)
            ms = statistics.median(times) * 1000
            worst = max(worst, ms / floor_ms)
            print(
                f"{demo:20} {layer or GLOBAL:22} {len(times):>7} {ms:10.0f} {ms / floor_ms:8.2f}",
                flush=True,
            )
    verdict = "met" if worst <= GOAL_FLOOR else "MISSED"
    print(f"slowest slider: {worst:.2f}× the floor (goal <= {GOAL_FLOOR:g}×, {verdict})")


def larger(
    page: Page, url: str, demo: str, layers: list[str], steps: int, floor_ms: float
) -> tuple[wb.Workbench, dict[str, float]]:
    """A larger demo: each slider's first number, first accuracy and exact accuracy, the
    global slider last (its bound: the whole network). Returns the demo's workbench and the
    median seconds to the exact numbers of each slider."""
    loaded = wb.load_demo(demo)
    bench = wb.Workbench(loaded.model, loaded.val)
    page.goto(f"{url}/prune?demo={demo}")
    wait_for_app(page, timeout_ms=600_000)
    print(
        f"\n{demo}, median of {steps} presses (s), floor {floor_ms:.0f} ms; bound: the forward "
        "after the layer"
    )
    print(f"{'slider':52} {'sizes':>7} {'× floor':>8} {'accuracy':>9} {'× floor':>8} "
          f"{'estimate':>8} {'exact':>7} {'bound':>7} {'exact/bound':>11}")  # fmt: skip
    exact_of, worst = {}, 0.0
    for layer in [*layers, None]:
        found = progressive(page, layer, steps)
        cut = bench.layer_names[0] if layer is None else layer
        percent = steps  # each press adds 1 to a slider at 0
        bound = SuffixForward(bench, cut, bench.val_inputs)(plan_at(bench, layer, percent))
        bound /= 1000
        first, metrics, exact = (statistics.median(m[k] for m in found)
                                 for k in ("first", "metrics", "exact"))  # fmt: skip
        estimated = sum("estimated" in m for m in found)
        exact_of[layer or GLOBAL] = exact
        worst = max(worst, first * 1000 / floor_ms)
        print(f"{layer or GLOBAL:52} {first:7.2f} {first * 1000 / floor_ms:8.2f} {metrics:9.2f} "
              f"{metrics * 1000 / floor_ms:8.2f} {estimated:>4}/{steps:<3} {exact:7.2f} "
              f"{bound:7.3f} {exact / bound:11.2f}", flush=True)  # fmt: skip
    verdict = "met" if worst <= GOAL_FIRST else "MISSED"
    print(f"slowest first number: {worst:.2f}× the floor (goal <= {GOAL_FIRST:g}×, {verdict})")
    return bench, exact_of


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
