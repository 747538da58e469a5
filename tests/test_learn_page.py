"""The Learn page with AppTest: each lesson walked by setting the real widgets, each check seen
to pass, and the closing numbers equal to what the Prune and Recover pages show."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

import workbench as wb
from tests.test_app import APP, open_section
from workbench.learn import LESSONS, Facts, PlanIs
from workbench.plots._format import format_metric


def open_learn(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    at.switch_page("pages/learn.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def go(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def passed(at: AppTest) -> str:
    """The explanation of the current step (its check passed), or fail with the hint."""
    at = go(at, "pages/learn.py")
    assert at.success, [i.value for i in at.info]
    return at.success[0].value


def set_options(at: AppTest, demo: str, **options: str) -> None:
    """The Prune page's scope and granularity controls, as a person sets them."""
    for kind, value in options.items():
        if kind == "scope":
            at.segmented_control(key=f"scope:{demo}:").set_value(value).run()
        else:
            at.selectbox(key=f"{kind}:{demo}:").set_value(value).run()
        assert not at.exception, [e.value for e in at.exception]


def global_slider(at: AppTest, demo: str, percent: int) -> None:
    at.slider(key=f"global:{demo}:").set_value(percent).run()
    assert not at.exception, [e.value for e in at.exception]


def prune(at: AppTest, demo: str, percent: int, **options: str) -> str:
    """On the Prune page: the options, then the global slider; the accuracy card it shows."""
    go(at, "pages/prune.py")
    set_options(at, demo, **options)
    global_slider(at, demo, percent)
    return next(m.value for m in at.metric if m.label == "Accuracy")


def set_up(lesson: str) -> AppTest:
    """The lesson's first step, set up by its button."""
    at = open_learn({"lesson": lesson, "step": "1"})
    button(at, "Set it up").click().run()
    return at


def recover(
    at: AppTest, demo: str, epochs: int = 2, distill: float = 0.0, kind: str = "Fine-tune"
) -> None:
    go(at, "pages/recover.py")
    next(n for n in at.number_input if n.label == "Epochs").set_value(epochs)
    next(s for s in at.slider if s.label == "Distillation weight α").set_value(distill)
    next(c for c in at.segmented_control if c.label == "Recovery").set_value(kind)
    button(at, "Start").click().run()
    deadline = time.monotonic() + 180
    while any(job.running for job in at.session_state["recoveries"][demo]):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def test_the_primer_and_the_lessons_are_one_click_away() -> None:
    at = open_learn()
    assert at.title[0].value == "Learn"
    assert len([b for b in at.button if b.label == "Start"]) == len(LESSONS)
    assert "Pruning on one screen" in [h.value for h in at.subheader]


def test_lesson_magnitude_end_to_end() -> None:
    at = open_learn()
    button(at, "Start").click().run()  # the first lesson
    assert at.query_params["lesson"] == ["magnitude"] or at.query_params["lesson"] == "magnitude"
    button(at, "Set it up").click().run()
    assert at.session_state["demo"] == "digits-mlp"
    assert "dense accuracy" in passed(at)
    button(at, "Next").click().run()
    assert any("Not yet" in i.value for i in at.info)

    prune_accuracy = prune(at, "digits-mlp", 90, scope="global")
    text = passed(at)
    assert prune_accuracy in text  # the lesson quotes the Prune page's own number
    button(at, "Next").click().run()

    recover(at, "digits-mlp")
    recovered = next(m.value for m in at.metric if m.label.startswith("Recovered"))
    text = passed(at)
    assert recovered in text and prune_accuracy in text
    button(at, "Finish").click().run()
    assert at.session_state["lesson"] is None


def test_lesson_budgets_uniform_then_the_scan() -> None:
    at = set_up("budgets")
    uniform = prune(at, "digits-cnn", 80)
    assert uniform in passed(at)
    button(at, "Next").click().run()
    go(at, "pages/sensitivity.py")
    at.text_input(key="sensitivity-levels:digits-cnn:").set_value("0, 50, 80, 90").run()
    button(at, "Run scan").click().run()
    next(b for b in at.button if b.label == "Apply on the Prune page").click().run()
    assert not at.exception, [e.value for e in at.exception]
    applied = next(m.value for m in at.metric if m.label == "Accuracy")
    text = passed(at)
    assert applied in text and uniform in text


def test_lesson_zeros_unstructured_then_channels_timed() -> None:
    at = set_up("zeros")
    prune(at, "digits-cnn", 90, scope="global")
    assert "keeps its shape" in passed(at)
    button(at, "Next").click().run()
    assert any("Measure latency" in i.value for i in at.info)  # the hint says where
    masked = measure(at)["masked"]
    text = passed(at)
    assert masked in text and "zeros are not speed" in text
    button(at, "Next").click().run()
    prune(at, "digits-cnn", 50, scope="layer", granularity="channel")
    assert "really saves" in passed(at)
    button(at, "Next").click().run()
    cards = measure(at)
    text = passed(at)
    assert cards["compacted"] in text  # the Ship section's own number


def measure(at: AppTest) -> dict[str, str]:
    """Press the Prune page's Measure latency; the latency cards by model."""
    go(at, "pages/prune.py")
    open_section(at, "ship-open")
    button(at, "Measure latency").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return {m.label: m.value for m in at.metric if m.value.endswith(" ms")}


def test_lesson_recovery_compares_four_ways() -> None:
    at = set_up("recovery")
    prune(at, "digits-mlp", 90, scope="global")
    passed(at)
    button(at, "Next").click().run()
    for kind, distill in (("Fine-tune", 0.0), ("Fine-tune", 0.5), ("Gradual (AGP)", 0.0)):
        recover(at, "digits-mlp", epochs=2, distill=distill, kind=kind)
        passed(at)
        if kind != "Gradual (AGP)" or distill:
            button(at, "Next").click().run()
    text = passed(at)
    # the closing numbers are the Recover page's comparison table
    go(at, "pages/recover.py")
    runs = at.dataframe[0].value
    for value in runs["value"]:
        assert value in text
    go(at, "pages/learn.py")
    assert any("What to try next" in m.value for m in at.markdown)


def test_progress_lives_in_the_url_and_a_restart_forgets() -> None:
    at = open_learn({"lesson": "magnitude", "step": "2"})
    assert "Step 2 of 3" in at.get("progress")[0].proto.text
    button(at, "Restart").click().run()
    assert "Step 1 of 3" in at.get("progress")[0].proto.text


def test_checks_say_what_is_missing() -> None:
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.5)
    facts = Facts("digits-cnn", plan, bench.evaluate(plan))
    check = PlanIs("digits-cnn", 0.79, 0.81, scope="global", uniform=True)
    assert not check.passes(facts)
    assert "scope to global" in check.hint(facts) and "50.0%" in check.hint(facts)
    assert (
        format_metric("accuracy", bench.evaluate(plan).metrics["accuracy"])
        in facts.numbers()["pruned"]
    )
