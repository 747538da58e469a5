"""Progressive evaluation (issue 17 #2): the estimate on the fixed, stratified subset against a
fresh evaluation of those samples and scikit-learn, its interval against the bootstrap by hand,
the exact report that replaces it, and cancelled evaluations that leave nothing stale."""

from __future__ import annotations

import copy
import gc
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from streamlit.testing.v1 import AppTest
from torch.nn.utils import prune

import workbench as wb
import workbench.evaluate.estimate as estimate_module
from workbench.evaluate.estimate import (
    RESAMPLES,
    Estimator,
    estimator,
    evaluate_iter,
    stratified_rows,
)
from workbench.evaluate.workbench import EvaluationCancelled

APP = str(Path(__file__).resolve().parents[1] / "app.py")
F64 = torch.finfo(torch.float64).eps
# Metrics are float64 reductions of float32 logits: two evaluations of the same outputs agree
# to float64 rounding; outputs of differently shaped batches to float32 rounding.
F32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def digits() -> tuple[wb.Demo, wb.Workbench]:
    demo = wb.load_demo("digits-cnn")
    return demo, wb.Workbench(demo.model, demo.val, batch_size=64)


def _plan(bench: wb.Workbench, method: str = "l1") -> wb.PruningPlan:
    return wb.PruningPlan(sparsity={name: 0.6 for name in bench.layer_names}, method=method)


def test_subset_is_fixed_and_stratified_by_class(digits) -> None:
    demo, bench = digits
    labels = demo.val.tensors[1]
    rows = estimator(bench).rows
    assert torch.equal(rows, Estimator(bench).rows)  # the same workbench, the same subset
    assert torch.equal(rows, rows.unique())  # sorted, no repeats
    share = torch.bincount(labels, minlength=10).double() * len(rows) / len(labels)
    counts = torch.bincount(labels[rows], minlength=10).double()
    assert ((counts - share).abs() < 1).all()  # each class within one sample of its share
    assert counts.sum() == min(256, len(labels) // 4)
    other = stratified_rows(labels, len(rows), seed=1)
    assert not torch.equal(rows, other)  # the seed draws the members


def test_estimate_equals_a_fresh_evaluation_of_the_subset(digits) -> None:
    demo, bench = digits
    found = estimator(bench)
    plan = _plan(bench)
    estimate = found.estimate(plan)
    inputs, labels = demo.val.tensors
    rows = found.rows
    fresh = wb.Workbench(demo.model, (inputs[rows], labels[rows])).evaluate(plan)
    assert estimate.samples == len(rows)
    for name, value in fresh.metrics.items():
        assert estimate.metrics[name] == pytest.approx(value, rel=8 * F32, abs=8 * F32), name
    # sklearn on the predictions of a copy pruned by torch.nn.utils.prune
    model = copy.deepcopy(demo.model).eval()
    for name, mask in bench.masks(plan).items():
        prune.custom_from_mask(model.get_submodule(name), "weight", mask)
    with torch.no_grad():
        predicted = model(inputs[rows]).argmax(1).numpy()
    assert estimate.metrics["accuracy"] == pytest.approx(
        accuracy_score(labels[rows].numpy(), predicted), abs=F64
    )
    assert dict(estimate.size) == dict(bench.evaluate(plan).size)  # sizes need no data: exact


def test_interval_is_the_percentile_bootstrap_of_the_subset(digits) -> None:
    demo, bench = digits
    found = estimator(bench)
    estimate = found.estimate(_plan(bench))
    inputs, labels = demo.val.tensors
    rows = found.rows
    sub = wb.Workbench(demo.model, (inputs[rows], labels[rows]))
    predicted = sub.outputs(_plan(bench)).argmax(1).numpy()
    truth = labels[rows].numpy()
    # The documented draw: RESAMPLES rows of n indices, uniform with replacement, seed 0.
    generator = torch.Generator().manual_seed(0)
    draws = torch.randint(len(rows), (RESAMPLES, len(rows)), generator=generator).numpy()
    values = np.array([accuracy_score(truth[r], predicted[r]) for r in draws])
    low, high = np.percentile(values, [2.5, 97.5])
    assert estimate.low["accuracy"] == pytest.approx(low, abs=1e-12)
    assert estimate.high["accuracy"] == pytest.approx(high, abs=1e-12)
    assert estimate.low["accuracy"] <= estimate.metrics["accuracy"] <= estimate.high["accuracy"]
    assert estimate.half_width("accuracy") > 0


def test_data_criteria_rank_the_subset_as_the_whole_set(digits) -> None:
    _, bench = digits
    plan = _plan(bench, method="taylor")
    sub_masks = estimator(bench).subset.masks(plan)
    for name, mask in bench.masks(plan).items():
        assert torch.equal(sub_masks[name], mask), name


def test_a_slow_evaluation_shows_the_estimate_then_the_exact_report(digits, monkeypatch) -> None:
    monkeypatch.setattr(estimate_module, "MIN_FLOPS", 0)  # the demo is tiny: estimate it anyway
    demo, _ = digits
    bench = wb.Workbench(demo.model, demo.val)
    plan = _plan(bench)
    events = list(evaluate_iter(bench, plan, budget=0.0))  # every evaluation is "slow"
    assert [e.estimate is not None for e in events] == [True, False]
    assert not events[0].finished and events[1].finished
    assert events[0].estimate.metrics == estimator(bench).estimate(plan).metrics
    fresh = wb.Workbench(demo.model, demo.val).evaluate(plan)
    assert events[1].result.metrics == fresh.metrics


def test_a_fast_evaluation_is_exact_at_once(digits) -> None:
    _, bench = digits
    events = list(evaluate_iter(bench, _plan(bench), budget=float("inf")))
    assert len(events) == 1 and events[0].finished


def test_a_cancelled_evaluation_leaves_nothing_stale(digits) -> None:
    demo, _ = digits
    bench = wb.Workbench(demo.model, demo.val, batch_size=64)  # 6 batches
    plan = _plan(bench)
    asked = []

    def cancel() -> bool:  # superseded after the second batch
        asked.append(True)
        return len(asked) > 2

    with pytest.raises(EvaluationCancelled):
        bench.evaluate(plan, cancel)
    assert len(asked) == 3  # asked before each batch, stopped at the third
    assert bench.resumes_at(plan) is not None  # no report was kept
    fresh = wb.Workbench(demo.model, demo.val, batch_size=64)
    assert bench.evaluate(plan).metrics == fresh.evaluate(plan).metrics
    assert bench.resumes_at(plan) is None  # the finished one is kept
    # a later plan, resuming from whatever the cancelled run left, is exact too
    later = plan.with_sparsity(bench.layer_names[-1], 0.9)
    assert bench.evaluate(later).metrics == fresh.evaluate(later).metrics


def test_a_cancelled_progressive_evaluation_raises_after_its_estimate(digits, monkeypatch) -> None:
    monkeypatch.setattr(estimate_module, "MIN_FLOPS", 0)
    demo, _ = digits
    bench = wb.Workbench(demo.model, demo.val, batch_size=64)
    events = evaluate_iter(bench, _plan(bench), budget=0.0, cancel=lambda: True)
    assert next(events).estimate is not None
    with pytest.raises(EvaluationCancelled):
        next(events)
    assert estimator(bench).predicted_seconds(_plan(bench)) is None  # nothing measured


def test_costs_are_predicted_from_measured_evaluations(digits) -> None:
    _, bench = digits
    found = estimator(bench)
    plan = wb.PruningPlan(sparsity={bench.layer_names[0]: 0.35})
    first = bench.layer_names[0]
    assert bench.resumes_at(plan) == first  # a change to the first layer runs everything
    found.evaluate(plan)
    assert found.predicted_seconds(plan) == 0.0  # its report is cached now
    other = plan.with_sparsity(first, 0.45)
    assert bench.resumes_at(other) == first
    assert found.predicted_seconds(other) > 0


@pytest.mark.parametrize("name", wb.list_demos())
def test_the_small_demos_never_show_an_estimate(name: str) -> None:
    demo = wb.load_demo(name)
    bench = wb.Workbench(demo.model, demo.val)
    assert not estimator(bench).available  # under MIN_FLOPS: fast on any machine
    for layer in (bench.layer_names[0], bench.layer_names[-1]):
        for sparsity in (0.2, 0.4, 0.6):
            plan = wb.PruningPlan(sparsity={layer: sparsity})
            events = list(evaluate_iter(bench, plan))
            assert [e.estimate for e in events] == [None], (layer, sparsity)


# ---- the Prune page ----------------------------------------------------------------------------


def _prune_page(demo: str = "digits-cnn") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["demo"] = demo
    at.run()
    at.switch_page("pages/prune.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _slider(at: AppTest, layer: str):
    return next(s for s in at.slider if s.label.startswith(f"{layer} ·"))


def test_prune_page_shows_the_estimate_then_the_exact_numbers(monkeypatch) -> None:
    from ui.prune import exact

    monkeypatch.setattr(exact, "BUDGET", 0.0)  # every step is "slow"
    monkeypatch.setattr(estimate_module, "MIN_FLOPS", 0)
    monkeypatch.setattr(exact, "WAIT_SECONDS", 0.0)  # draw the estimate, do not wait here
    release, real = threading.Event(), exact.evaluate_iter

    def held(*args, **options):  # the exact numbers come when the test says so
        events = real(*args, **options)
        yield next(events)
        release.wait(60)
        yield from events

    monkeypatch.setattr(exact, "evaluate_iter", held)
    at = _prune_page()
    # A plan no other test evaluates: the app's workbench is shared by the tests of a run,
    # and a plan whose report it already holds is exact at once.
    _slider(at, "features.2").set_value(73).run()
    assert not at.exception, [e.value for e in at.exception]
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan({"features.2": 0.73})
    estimate = estimator(bench).estimate(plan)
    half = estimate.half_width("accuracy") * 100
    assert _metric(at, "Accuracy") == f"≈ {estimate.metrics['accuracy']:.1%} ± {half:.1f}"
    assert any("Exact numbers coming" in p.proto.text for p in at.get("progress"))
    # sizes need no data: exact at once
    report = bench.evaluate(plan)
    assert _metric(at, "Non-zero params") == f"{report.size['nonzero_params']:,}"
    release.set()
    at.session_state["exact"]["digits-cnn"].wait(plan, 60)
    at.run()
    assert _metric(at, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
    assert not at.get("progress")


def test_prune_page_on_a_small_demo_shows_exact_numbers_only() -> None:
    at = _prune_page()
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    for value in (30, 31, 32, 60):
        _slider(at, "features.0").set_value(value).run()
        report = bench.evaluate(wb.PruningPlan({"features.0": value / 100}))
        assert _metric(at, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
        assert not at.get("progress")


def test_a_workbench_and_its_estimator_are_freed_together() -> None:
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    estimator(bench).subset  # noqa: B018 - builds the subset workbench
    gone = weakref.ref(bench)
    del bench
    gc.collect()
    assert gone() is None
