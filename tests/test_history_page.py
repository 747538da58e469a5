"""The Prune page's Keep / Undo / Redo and kept runs, and the History page, with AppTest; every
test keeps its runs in a store of its own (`data_dir`, tests/conftest.py)."""

from __future__ import annotations

import pandas as pd
import pytest
import streamlit as st

import workbench as wb
from tests.test_app import layer_slider, metric, open_page, open_section
from ui.history.frontier import picked_run
from workbench.track import Store, default_uri, frontier_table


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


def button(at, key: str):
    return at.button(key=f"{key}:digits-cnn:")


def keep(at, layer: str, percent: int):
    layer_slider(at, layer).set_value(percent).run()
    button(at, "keep").click().run()
    assert not at.exception, [e.value for e in at.exception]


def restart() -> None:
    """What a server restart forgets: every cached store and listing."""
    st.cache_resource.clear()
    st.cache_data.clear()


def test_keep_records_a_run_whose_metrics_equal_the_report(data_dir, bench) -> None:
    at = open_page("pages/prune.py")
    keep(at, "features.2", 70)
    runs = Store(default_uri()).runs("digits-cnn")
    assert len(runs) == 1
    report = bench.evaluate(wb.PruningPlan({"features.2": 0.7}))
    for name, value in {**report.metrics, **dict(report.size)}.items():
        assert runs.iloc[0][f"metrics.{name}"] == pytest.approx(value, rel=1e-12)
    assert runs.iloc[0]["tags.source"] == "keep"
    expander = next(e for e in at.expander if e.label.startswith("Kept runs"))
    assert expander.label == "Kept runs (1)"


def test_keep_records_the_compacted_model_and_the_measured_latency(data_dir, bench) -> None:
    at = open_page("pages/prune.py", query={"sp": "features.0:0.5,features.2:0.5", "gran": "channel"})
    open_section(at, "ship-open")
    next(b for b in at.button if b.label == "Measure latency").click().run()
    button(at, "keep").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = Store(default_uri()).runs("digits-cnn").iloc[0]
    plan = wb.PruningPlan({"features.0": 0.5, "features.2": 0.5}, granularity="channel")
    small = wb.compact(bench, plan)
    assert run["metrics.compacted_bytes"] == small.dense_bytes
    assert run["metrics.compacted_flops"] == small.flops(bench.val_inputs[:1])
    for label in ("dense", "masked", "compacted"):  # the Ship section's cards, as kept
        assert metric(at, label) == f"{run[f'metrics.latency_ms.{label}']:.2f} ms"
    assert run["metrics.latency_ms"] == run["metrics.latency_ms.compacted"]
    at.switch_page("pages/history.py").run()
    costs = at.button_group(key="pareto-cost:digits-cnn:").options
    assert {"Compacted bytes", "Latency, ms (measured)"} <= set(costs)
    at.button_group(key="pareto-cost:digits-cnn:").set_value("latency_ms").run()
    assert not at.exception, [e.value for e in at.exception]


def test_a_download_is_kept_as_a_run_with_its_file(data_dir, bench) -> None:
    """The Ship section's download callback (deferred: Streamlit runs it on the click, which
    AppTest cannot make), called in a script as the button would."""
    from streamlit.testing.v1 import AppTest

    def script() -> None:
        import streamlit as st

        import workbench as wb
        from ui.history import tracking

        made = tracking.export_keeper("pruned")
        plan = wb.PruningPlan({"features.2": 0.5})
        st.session_state["made"] = made(plan, "safetensors", "digits-cnn-pruned.safetensors")

    at = AppTest.from_function(script, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    store = Store(default_uri())
    run = store.runs("digits-cnn").iloc[0]
    assert run["tags.source"] == "export"
    assert store.artifact(run["run_id"], "digits-cnn-pruned.safetensors") == at.session_state["made"]
    plan = wb.PruningPlan({"features.2": 0.5})
    assert run["metrics.accuracy"] == bench.evaluate(plan).metrics["accuracy"]
    assert wb.PruningPlan.from_json(store.artifact(run["run_id"], "plan.json").decode()) == plan


def test_runs_survive_a_restart_and_load_onto_the_sliders(data_dir) -> None:
    at = open_page("pages/prune.py")
    keep(at, "classifier.1", 80)
    restart()
    fresh = open_page("pages/history.py")  # a new session on a new server's caches
    table = fresh.dataframe[0].value
    assert len(table) == 1
    assert len(fresh.get("plotly_chart")) == 1  # the frontier (one run: nothing to compare)
    fresh.switch_page("pages/prune.py").run()
    assert layer_slider(fresh, "classifier.1").value == 0
    fresh.switch_page("pages/history.py").run()
    fresh.button(key="history-load-button:digits-cnn:").click().run()
    fresh.switch_page("pages/prune.py").run()
    assert layer_slider(fresh, "classifier.1").value == 80


def test_undo_and_redo_walk_the_plan_history(data_dir, bench) -> None:
    at = open_page("pages/prune.py")
    assert button(at, "undo").disabled and button(at, "redo").disabled
    layer_slider(at, "features.2").set_value(40).run()
    layer_slider(at, "classifier.1").set_value(90).run()
    button(at, "undo").click().run()
    assert layer_slider(at, "classifier.1").value == 0
    assert layer_slider(at, "features.2").value == 40
    assert not button(at, "redo").disabled
    report = bench.evaluate(wb.PruningPlan({"features.2": 0.4}))
    assert metric(at, "Accuracy") == f"{report.metrics['accuracy']:.2%}"
    button(at, "undo").click().run()
    assert layer_slider(at, "features.2").value == 0
    assert button(at, "undo").disabled
    button(at, "redo").click().run()
    button(at, "redo").click().run()
    assert layer_slider(at, "classifier.1").value == 90
    assert set(at.query_params["sp"].split(",")) == {"features.2:0.4", "classifier.1:0.9"}
    layer_slider(at, "features.0").set_value(10).run()  # a new change forgets what was undone
    assert button(at, "redo").disabled


def test_history_compares_two_runs(data_dir, bench) -> None:
    at = open_page("pages/prune.py")
    keep(at, "classifier.1", 50)
    keep(at, "features.2", 90)  # the second run: classifier.1 50 %, features.2 90 %
    at.switch_page("pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    first = bench.evaluate(wb.PruningPlan({"classifier.1": 0.5}))
    second = bench.evaluate(wb.PruningPlan({"classifier.1": 0.5, "features.2": 0.9}))
    card = next(m for m in at.metric if m.label == "Accuracy")
    assert card.value == f"{second.metrics['accuracy']:.2%}"
    delta = second.metrics["accuracy"] - first.metrics["accuracy"]
    assert card.delta == f"{delta * 100:+.2f} pp"
    sparse = next(m for m in at.metric if m.label == "Sparse size")
    saved = first.size["sparse_bytes"] - second.size["sparse_bytes"]
    assert saved > 0 and sparse.delta == f"−{saved / 1024:,.1f} KB"
    assert len(at.get("plotly_chart")) == 3  # layers, per class, frontier


def test_an_empty_history_says_how_to_fill_it(data_dir) -> None:
    at = open_page("pages/history.py")
    assert "No runs of this model yet" in at.info[0].value
    assert at.button(key="search-start:digits-cnn:")


def test_a_frontier_click_names_its_run() -> None:
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "tags.mlflow.runName": ["A", "B", "C"],
            "metrics.accuracy": [0.9, 0.8, 0.95],
            "metrics.sparse_bytes": [100.0, 200.0, 300.0],
        }
    )
    points = frontier_table(runs, "accuracy", "sparse_bytes")
    assert list(points["front"]) == [True, False, True]
    selection = {"points": [{"curve_number": 1, "point_index": 2, "x": 300.0, "y": 0.95}]}
    assert picked_run(selection, points) == "c"
    assert picked_run({"points": [{"curve_number": 0, "point_index": 0}]}, points) is None
    assert picked_run({"points": []}, points) is None
    assert picked_run(None, points) is None


def test_an_applied_proposal_is_kept(data_dir) -> None:
    at = open_page("pages/sensitivity.py", "digits-mlp")
    at.text_input(key="sensitivity-levels:digits-mlp:").set_value("0, 90").run()
    next(b for b in at.button if b.label == "Run scan").click().run()
    measured = next(m.value for m in at.metric if m.label == "Measured accuracy")
    next(b for b in at.button if b.label == "Apply on the Prune page").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runs = Store(default_uri()).runs("digits-mlp")
    assert list(runs["tags.source"]) == ["proposal"]
    assert f"{runs.iloc[0]['metrics.accuracy']:.2%}" == measured


def test_a_finished_recovery_is_kept(data_dir) -> None:
    at = open_page("pages/recover.py", "digits-mlp", {"sp": "fc1:0.9", "scope": "global"})
    next(n for n in at.number_input if n.label == "Epochs").set_value(1)
    next(b for b in at.button if b.label == "Start").click().run()
    job = at.session_state["recoveries"]["digits-mlp"][-1]
    job.join(120)
    assert job.result is not None and job.error is None and job.crash is None
    runs = Store(default_uri()).runs("digits-mlp")
    assert list(runs["tags.source"]) == ["recovery"]
    for name, value in job.result.report.metrics.items():
        assert runs.iloc[0][f"metrics.{name}"] == pytest.approx(value, rel=1e-12)
    assert Store(default_uri()).plan(runs.iloc[0]["run_id"]) == job.result.plan


def test_a_search_keeps_every_trial_and_fills_the_frontier(data_dir, bench) -> None:
    at = open_page("pages/history.py")
    at.number_input(key="search-trials:digits-cnn:").set_value(5).run()
    at.button(key="search-start:digits-cnn:").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runs = Store(default_uri()).runs("digits-cnn")
    assert len(runs) == 5 and set(runs["tags.source"]) == {"search"}
    store = Store(default_uri())
    for run_id, accuracy in zip(runs["run_id"], runs["metrics.accuracy"], strict=True):
        assert bench.evaluate(store.plan(run_id)).metrics["accuracy"] == accuracy
    assert at.subheader[0].value == "Runs (5)"
    # compare, frontier, and the search in Optuna's plots (Pareto front, history, importance)
    assert len(at.get("plotly_chart")) == 6
    assert any("latest search in Optuna's plots (5 trials, optuna)" in e.label for e in at.expander)
    assert [t.label for t in at.tabs][-3:] == ["Pareto front", "History", "Layer importance"]


def test_a_flaml_search_is_kept_with_its_backend_and_study(data_dir, bench) -> None:
    at = open_page("pages/history.py")
    at.number_input(key="search-trials:digits-cnn:").set_value(4).run()
    at.button_group(key="search-backend:digits-cnn:").set_value("flaml").run()
    at.button(key="search-start:digits-cnn:").click().run()
    assert not at.exception, [e.value for e in at.exception]
    runs = Store(default_uri()).runs("digits-cnn")
    assert len(runs) == 4 and set(runs["tags.backend"]) == {"flaml"}
    found = wb.track.search(bench, trials=4, backend="flaml")
    assert sorted(runs["metrics.accuracy"]) == sorted(r.metrics["accuracy"] for r in found.reports)
    study = wb.track.search_study(runs)
    assert (study.metric, study.cost, study.backend) == ("accuracy", "sparse_bytes", "flaml")
    assert sorted(t.values[0] for t in study.study.trials) == sorted(runs["metrics.accuracy"])
    assert any("(4 trials, flaml)" in e.label for e in at.expander)


def test_an_unreadable_store_is_one_line_not_a_crash(tmp_path, monkeypatch) -> None:
    (tmp_path / "mlflow.db").write_bytes(b"this is no sqlite database" * 100)
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    restart()
    at = open_page("pages/prune.py")
    assert any("The run store cannot be read" in e.value for e in at.error)
    button(at, "keep").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Cannot keep this plan" in e.value for e in at.error)
    at.switch_page("pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("The run store cannot be read" in e.value for e in at.error)


def _with_upload(at, bench):
    """This session brought a model of its own, under the key any session would give it."""
    from ui.state import Upload
    from workbench.models import demo_info

    info = demo_info("digits-mlp")
    at.session_state["uploads"]["yours-net"] = Upload(
        type(info)(**{**info.__dict__, "name": "yours-net"}), bench
    )
    at.session_state["demo"] = "yours-net"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_uploads_runs_are_listed_to_its_session_only(data_dir) -> None:
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    mine = _with_upload(open_page("pages/prune.py"), bench)
    mine.button(key="keep:yours-net:").click().run()
    assert next(e for e in mine.expander if e.label.startswith("Kept runs")).label == "Kept runs (1)"
    other = _with_upload(open_page("pages/prune.py"), bench)  # same name, same data
    assert next(e for e in other.expander if e.label.startswith("Kept runs")).label == "Kept runs (0)"
    runs = Store(default_uri()).runs("yours-net", session=mine.session_state["session_id"])
    assert len(runs) == 1 and runs.iloc[0]["tags.session"] == mine.session_state["session_id"]
