"""The Recover page with Streamlit's AppTest: a real run in its background thread, its live
progress, the results against an independent fine-tune, Stop, and the guidance when a plan or
a training set is missing."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

import workbench as wb
from tests.test_app import open_page
from workbench.plots._format import format_metric

PLAN = {"sp": "fc1:0.9,fc2:0.9,fc3:0.9", "scope": "global"}


def _wait(at: AppTest, seconds: float = 120) -> AppTest:
    """Rerun until the page shows no running job (the fragment polls; AppTest does not)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        jobs = at.session_state["recoveries"].get("digits-mlp", [])
        if jobs and not any(job.running for job in jobs):
            break
        time.sleep(0.5)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _start(at: AppTest, epochs: int = 2, **widgets: object) -> AppTest:
    next(n for n in at.number_input if n.label == "Epochs").set_value(epochs)
    for label, value in widgets.items():
        next(w for w in [*at.slider, *at.select_slider] if w.label == label).set_value(value)
    next(b for b in at.button if b.label == "Start").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_dense_plan_sends_the_user_to_prune_first() -> None:
    at = open_page("pages/recover.py", "digits-mlp")
    assert any("prune on the Prune page first" in i.value for i in at.info)


def test_a_run_shows_the_recovered_accuracy_of_an_independent_fine_tune() -> None:
    at = open_page("pages/recover.py", "digits-mlp", PLAN)
    assert not at.error, [e.value for e in at.error]
    _wait(_start(at, epochs=2))
    recovered = next(m for m in at.metric if m.label.startswith("Recovered"))
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.9, scope="global")
    oracle = wb.finetune(bench, plan, demo.train, epochs=2, lr=3e-3, batch_size=32, seed=0)
    assert recovered.value == format_metric("accuracy", oracle.report.metrics["accuracy"])
    one_shot = next(m for m in at.metric if m.label.startswith("One-shot"))
    assert one_shot.value == format_metric("accuracy", bench.evaluate(plan).metrics["accuracy"])
    # the comparison table lists one-shot and the run
    runs = at.dataframe[0].value
    assert list(runs["run"]) == ["one-shot", "Fine-tune"]
    # the recovered model joins the session's models
    next(b for b in at.button if b.label.startswith("Open the recovered model")).click()
    at.run()
    assert not at.exception
    assert at.session_state["demo"].startswith("digits-mlp · recovered")
    at.switch_page("pages/weights.py").run()
    assert not at.exception and not at.error


def test_stop_keeps_the_best_model_so_far() -> None:
    at = open_page("pages/recover.py", "digits-mlp", PLAN)
    _start(at, epochs=200)
    job = at.session_state["recoveries"]["digits-mlp"][-1]
    assert job.running
    next(b for b in at.button if b.label == "Stop").click()
    _wait(at.run())
    assert job.result is not None and job.result.stopped == "cancelled"
    assert len(job.rows) < 200 * 45
    assert any(m.label.startswith("Recovered") for m in at.metric)


def test_a_model_without_a_training_set_says_where_to_bring_one() -> None:
    at = open_page("pages/recover.py", "scale-resnet", {"sp": "fc:0.5"})
    assert any("no training set" in i.value for i in at.info), [i.value for i in at.info]


@pytest.mark.parametrize("demo", ["diabetes-regressor", "digits-cnn"])
def test_the_page_renders_for_other_demos(demo: str) -> None:
    bench_layers = wb.Workbench(wb.load_demo(demo).model, wb.load_demo(demo).val).layer_names
    at = open_page("pages/recover.py", demo, {"sp": f"{bench_layers[0]}:0.5"})
    assert not at.error, [e.value for e in at.error]
    assert any(b.label == "Start" for b in at.button)
