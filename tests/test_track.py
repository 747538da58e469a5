"""Kept plans as MLflow runs (workbench.track): what a run holds, that it survives a new store,
that uploads stay private, and that the frontier is exactly the non-dominated set."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import workbench as wb
from workbench.track import (
    Store,
    TrackError,
    class_change,
    fingerprint,
    frontier,
    frontier_table,
    layer_sparsity,
)


@pytest.fixture
def store(data_dir) -> Store:
    return Store(f"sqlite:///{data_dir / 'mlflow.db'}")


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


PLAN = wb.PruningPlan(sparsity={"features.0": 0.5, "classifier.1": 0.8}, method="l2")


def test_a_kept_plan_is_a_run_whose_metrics_equal_the_report(store, bench) -> None:
    report = bench.evaluate(PLAN)
    run_id = store.keep(report, model="digits-cnn", data=fingerprint(bench), name="mine")
    runs = store.runs("digits-cnn")
    assert list(runs["run_id"]) == [run_id]
    row = runs.iloc[0]
    for name, value in report.metrics.items():
        assert row[f"metrics.{name}"] == pytest.approx(value, abs=0, rel=1e-12)
        assert row[f"metrics.dense_{name}"] == pytest.approx(report.dense_metrics[name], rel=1e-12)
    for name, value in report.size.items():
        assert row[f"metrics.{name}"] == value
    assert (row["params.method"], row["params.granularity"], row["params.scope"]) == (
        "l2",
        "unstructured",
        "layer",
    )
    assert float(row["params.sparsity.classifier.1"]) == 0.8
    assert row["tags.model"] == "digits-cnn"
    assert row["tags.data"] == fingerprint(bench)
    assert row["tags.source"] == "keep"
    assert row["tags.mlflow.runName"] == "mine"
    detail = store.detail(run_id)
    assert detail.plan == PLAN
    assert store.plan(run_id) == PLAN
    pd.testing.assert_series_equal(
        detail.layers["sparsity"], report.layers["sparsity"], check_names=False
    )
    pd.testing.assert_frame_equal(detail.per_class, report.per_class, check_dtype=False)


def test_runs_survive_a_new_store_and_are_listed_newest_first(store, bench) -> None:
    first = store.keep(bench.evaluate(PLAN), model="digits-cnn")
    second = store.keep(bench.evaluate(wb.PruningPlan()), model="digits-cnn", source="proposal")
    again = Store(store.uri)  # a restart: nothing in memory
    assert list(again.runs("digits-cnn")["run_id"]) == [second, first]
    assert again.plan(first) == PLAN
    assert again.runs("digits-mlp").empty
    assert set(again.runs()["run_id"]) == {first, second}


def test_upload_runs_are_listed_to_their_session_only(store, bench) -> None:
    report = bench.evaluate(PLAN)
    shared = store.keep(report, model="yours-net")
    mine = store.keep(report, model="yours-net", session="me")
    store.keep(report, model="yours-net", session="someone else")
    assert list(store.runs("yours-net", session="me")["run_id"]) == [mine, shared]
    assert list(store.runs("yours-net")["run_id"]) == [shared]


def test_runs_on_other_data_are_left_out_when_asked(store, bench) -> None:
    report = bench.evaluate(PLAN)
    ours = store.keep(report, model="digits-cnn", data=fingerprint(bench))
    store.keep(report, model="digits-cnn", data="other")
    assert list(store.runs("digits-cnn", data=fingerprint(bench))["run_id"]) == [ours]


def test_the_fingerprint_is_of_the_validation_data(bench) -> None:
    demo = wb.load_demo("digits-cnn")
    inputs, targets = demo.val.tensors
    other = wb.Workbench(demo.model, (inputs, (targets + 1) % 10))
    assert fingerprint(bench) == fingerprint(wb.Workbench(demo.model, demo.val))
    assert fingerprint(other) != fingerprint(bench)


def test_a_missing_run_is_one_track_error(store) -> None:
    with pytest.raises(TrackError, match="cannot be read back"):
        store.detail("0" * 32)


def _dominated(i: int, values: np.ndarray, costs: np.ndarray) -> bool:
    return any(
        costs[j] <= costs[i]
        and values[j] >= values[i]
        and (costs[j] < costs[i] or values[j] > values[i])
        for j in range(len(values))
        if j != i
    )


@pytest.mark.parametrize("seed", range(20))
def test_the_frontier_is_exactly_the_non_dominated_set(seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    values = rng.integers(0, 6, n).astype(float)  # few distinct values: many ties
    costs = rng.integers(0, 6, n).astype(float)
    expected = [not _dominated(i, values, costs) for i in range(n)]
    assert list(frontier(values, costs)) == expected
    # lower-is-better metrics: the same as maximising the negated values
    assert list(frontier(values, costs, higher_is_better=False)) == list(frontier(-values, costs))


def test_the_frontier_leaves_out_points_with_a_nan() -> None:
    on = frontier([0.9, float("nan"), 0.8], [10.0, 1.0, 5.0])
    assert list(on) == [True, False, True]
    assert list(frontier([], [])) == []
    with pytest.raises(TrackError):
        frontier([1.0], [1.0, 2.0])


def test_frontier_table_and_compare_tables(store, bench) -> None:
    plans = [wb.PruningPlan(sparsity={"classifier.1": s}) for s in (0.0, 0.5, 0.95)]
    ids = [store.keep(bench.evaluate(p), model="digits-cnn") for p in plans]
    runs = store.runs("digits-cnn")
    table = frontier_table(runs, "accuracy", "sparse_bytes")
    expected = frontier(table["value"], table["cost"])
    assert list(table["front"]) == list(expected)
    assert set(table["run_id"]) == set(ids)
    with pytest.raises(TrackError, match="latency"):
        frontier_table(runs, "accuracy", "latency")
    first, second = store.detail(ids[0]), store.detail(ids[2])
    layers = layer_sparsity(first, second)
    assert list(layers["layer"]) == bench.layer_names
    assert list(layers.iloc[:, 2]) == pytest.approx([0.0, 0.0, 0.95, 0.0], abs=1e-3)
    change = class_change(first, second)
    for row, (a, b) in zip(
        change.itertuples(),
        itertools.zip_longest(first.per_class["accuracy"], second.per_class["accuracy"]),
        strict=True,
    ):
        assert row.change == pytest.approx(b - a)


def test_every_run_has_its_plan_json_and_keeps_files_and_measurements(store, bench) -> None:
    report = bench.evaluate(PLAN)
    measured = wb.track.ship_metrics(bench, PLAN)
    run_id = store.keep(
        report, model="digits-cnn", metrics=measured, files={"model.bin": b"\x00weights\xff"}
    )
    assert wb.PruningPlan.from_json(store.artifact(run_id, "plan.json").decode()) == PLAN
    assert store.artifact(run_id, "model.bin") == b"\x00weights\xff"
    row = store.runs("digits-cnn").iloc[0]
    for name, value in measured.items():
        assert row[f"metrics.{name}"] == value
    with pytest.raises(TrackError, match="no artifact"):
        store.artifact(run_id, "missing.bin")


def test_ship_metrics_are_the_compacted_models_and_the_latency_tables() -> None:
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan({"features.0": 0.5, "features.2": 0.5}, granularity="channel")
    small = wb.compact(bench, plan)
    table = pd.DataFrame(
        {"label": ["dense", "masked", "compacted"], "median_s": [3e-3, 3e-3, 1e-3],
         "batch": [1, 1, 1]}
    )  # fmt: skip
    found = wb.track.ship_metrics(bench, plan, latency=table)
    assert found["compacted_params"] == small.params
    assert found["compacted_bytes"] == small.dense_bytes < bench.evaluate(plan).dense_size["dense_bytes"]
    assert found["compacted_flops"] == small.flops(bench.val_inputs[:1])
    assert found["latency_ms"] == found["latency_ms.compacted"] == 1.0  # the shipped model's
    assert found["latency_ms.dense"] == 3.0 and found["latency_batch"] == 1
    # unstructured: nothing removed, so the compacted model is the dense one
    dense = wb.track.ship_metrics(bench, wb.PruningPlan({"features.2": 0.9}))
    assert dense["compacted_bytes"] == wb.compact(bench, wb.PruningPlan()).dense_bytes
    assert "latency_ms" not in dense


def test_the_frontier_takes_compacted_bytes_and_latency(store, bench) -> None:
    plans = [wb.PruningPlan({"features.2": v}, granularity="channel") for v in (0.25, 0.5, 0.75)]
    for plan, ms in zip(plans, (2.0, 1.0, 1.5), strict=True):
        table = pd.DataFrame({"label": ["compacted"], "median_s": [ms / 1e3], "batch": [1]})
        store.keep(bench.evaluate(plan), model="digits-cnn",
                   metrics=wb.track.ship_metrics(bench, plan, latency=table))  # fmt: skip
    runs = store.runs("digits-cnn")
    assert {"compacted_bytes", "latency_ms"} <= set(wb.track.FRONTIER_COSTS)
    points = frontier_table(runs, "accuracy", "latency_ms")
    assert sorted(points["cost"]) == pytest.approx([1.0, 1.5, 2.0])
    expected = frontier(points["value"], points["cost"])
    assert list(points["front"]) == list(expected)
    compacted = frontier_table(runs, "accuracy", "compacted_bytes")
    assert list(compacted["cost"]) == [runs.iloc[i]["metrics.compacted_bytes"] for i in range(3)]
