"""The automated search (track.search): every trial an exact evaluation, the front exactly its
non-dominated trials, locks and bounds held, progress and Stop."""

from __future__ import annotations

import threading

import pytest

import workbench as wb
from workbench.track import TrackError, frontier, search, search_iter


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


@pytest.fixture(scope="module", params=["optuna", "flaml"])
def result(bench, request):
    return search(
        bench, trials=12, seed=0, locked=["classifier.3"], max_sparsity={"features.0": 0.5},
        backend=request.param,
    )  # fmt: skip


def test_every_trial_is_an_exact_evaluation_of_its_plan(bench, result) -> None:
    assert len(result.reports) == 12 and not result.stopped
    for report in result.reports:
        fresh = bench.evaluate(report.plan)
        assert report.metrics == fresh.metrics
        assert dict(report.size) == dict(fresh.size)


def test_the_front_is_exactly_the_non_dominated_trials(result) -> None:
    values = [r.metrics["accuracy"] for r in result.reports]
    costs = [r.size["sparse_bytes"] for r in result.reports]
    assert result.front == list(frontier(values, costs))
    for report in result.best:
        assert not any(
            c <= report.size["sparse_bytes"]
            and v >= report.metrics["accuracy"]
            and (c < report.size["sparse_bytes"] or v > report.metrics["accuracy"])
            for v, c in zip(values, costs, strict=True)
        )
    assert list(result.table["front"]) == result.front


def test_locks_bounds_and_the_uniform_start_are_held(result) -> None:
    for report in result.reports:
        assert report.plan.sparsity["classifier.3"] == 0.0
        assert 0.0 <= report.plan.sparsity["features.0"] <= 0.5
        assert all(v <= 0.95 for v in report.plan.sparsity.values())
    # the first trials are the uniform allocations (within each layer's bounds)
    assert result.reports[0].plan.sparsity["features.2"] == 0.25
    assert result.reports[2].plan.sparsity["features.0"] == 0.5
    # and the front is at least as good as each of them for what it costs
    for uniform in result.reports[:3]:
        assert any(
            r.size["sparse_bytes"] <= uniform.size["sparse_bytes"]
            and r.metrics["accuracy"] >= uniform.metrics["accuracy"]
            for r in result.best
        )


@pytest.mark.parametrize("backend", ["optuna", "flaml"])
def test_progress_and_stop(bench, backend) -> None:
    stop = threading.Event()
    events = []
    for event in search_iter(
        bench, trials=10, stop=stop, metric="loss", cost="flops_effective", backend=backend
    ):
        events.append(event)
        if event.done == 3:
            stop.set()
    assert [e.done for e in events[:-1]] == [1, 2, 3]
    last = events[-1].result
    assert last.stopped and len(last.reports) == 3 and last.metric == "loss"
    # loss: lower is better
    assert last.front == list(
        frontier([r.metrics["loss"] for r in last.reports],
                 [r.size["flops_effective"] for r in last.reports], higher_is_better=False)
    )  # fmt: skip


def test_bad_settings_are_one_track_error(bench) -> None:
    with pytest.raises(TrackError, match="no layer"):
        search(bench, trials=1, locked=["nope"])
    with pytest.raises(TrackError, match="unknown cost"):
        search(bench, trials=1, cost="latency")
    with pytest.raises(TrackError, match="no metric"):
        search(bench, trials=1, metric="r2")
    with pytest.raises(TrackError, match="unknown backend"):
        search(bench, trials=1, backend="hyperopt")
    with pytest.raises(TrackError, match="tolerance"):
        search(bench, trials=1, backend="flaml", tolerance=-0.1)
    with pytest.raises(TrackError, match="nothing to search"):
        search(bench, trials=1, backend="flaml", locked=bench.layer_names)


def test_a_seeded_search_repeats_itself_and_flaml_is_lexicographic(bench) -> None:
    """FLAML's CFO with lexicographic objectives: the same seed gives the same trials; and it
    is the backend's own sampler (not Optuna's), every trial still an exact evaluation."""
    one = search(bench, trials=10, seed=4, backend="flaml", tolerance=0.02)
    two = search(bench, trials=10, seed=4, backend="flaml", tolerance=0.02)
    assert [r.plan for r in one.reports] == [r.plan for r in two.reports]
    assert one.backend == "flaml" and one.study is None
    optuna_plans = [r.plan for r in search(bench, trials=10, seed=4).reports]
    assert [r.plan for r in one.reports][3:] != optuna_plans[3:]
    for report in one.reports:
        assert report.metrics == bench.evaluate(report.plan).metrics


def test_closing_a_flaml_search_ends_its_thread(bench) -> None:
    before = threading.active_count()
    events = search_iter(bench, trials=10, backend="flaml")
    next(events), next(events)
    events.close()
    assert threading.active_count() == before


def test_on_digits_cnn_the_front_dominates_the_uniform_allocations(bench) -> None:
    """For each uniform sparsity, a point of the front is as small or smaller and as accurate
    or more (40 seeded trials; the uniform 25/50/75 % starts are not what this checks)."""
    found = search(bench, trials=40, seed=0)
    for level in (0.1, 0.3, 0.4, 0.6, 0.7, 0.8, 0.85, 0.9):
        uniform = bench.evaluate(wb.PruningPlan.uniform(bench.layer_names, level))
        assert any(
            r.size["sparse_bytes"] <= uniform.size["sparse_bytes"]
            and r.metrics["accuracy"] >= uniform.metrics["accuracy"]
            for r in found.best
        ), level


def test_a_kept_search_is_an_optuna_study_and_its_plots_show_its_front(bench, tmp_path) -> None:
    from workbench.track import Store, search_study, search_tags

    found = search(bench, trials=8, seed=1)
    store = Store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    store.keep(found.reports[0], model="digits-cnn", source="search", tags=search_tags("loss", "flops_effective"))
    tags = search_tags("accuracy", "sparse_bytes")
    for report in found.reports:
        store.keep(report, model="digits-cnn", source="search", tags=tags)
    study = search_study(store.runs("digits-cnn"))  # the latest search, not the first
    assert (study.search, study.metric, study.cost) == (tags["search"], "accuracy", "sparse_bytes")
    pairs = sorted((r.metrics["accuracy"], r.size["sparse_bytes"]) for r in found.reports)
    assert sorted(tuple(t.values) for t in study.study.trials) == pairs
    for trial in study.study.trials:  # each trial's parameters are its plan's sparsities
        assert any(trial.params == dict(r.plan.sparsity) for r in found.reports)
    best = {tuple(t.values) for t in study.study.best_trials}
    assert best == {(r.metrics["accuracy"], r.size["sparse_bytes"]) for r in found.best}
    figures = wb.plots.search_plots(study.study, study.metric, "Sparse bytes")
    assert list(figures) == ["Pareto front", "History", "Layer importance"]
    traces = [set(zip(t.x, t.y, strict=True)) for t in figures["Pareto front"].data]
    assert set().union(*traces) == set(pairs) and best in traces  # the front: a trace of its own
    importances = figures["Layer importance"].data[0]
    assert set(importances.y) == set(bench.layer_names)
    assert search_study(store.runs("nobody")) is None
