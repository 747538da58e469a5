"""Sensitivity scans and budget proposals: checked against fresh evaluations, torch's own pruning,
brute-force readings of the scan, and the engine's size report."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
from torch.nn.utils import prune

import workbench as wb
from workbench.analysis import (
    DEFAULT_LEVELS,
    Budget,
    BudgetError,
    ScanError,
    ScanProgress,
    cached_scan,
    clear_cache,
    drop_table,
    footprint,
    scan,
    scan_iter,
    solve_budget,
    subset_indices,
    tolerated_sparsity,
)
from workbench.analysis.sensitivity import bootstrap_metrics
from workbench.cli import main as cli_main
from workbench.evaluate.metrics import compute_metrics
from workbench.models.synthetic import scale_workload

LEVELS = (0.0, 0.3, 0.7, 0.95)


def make_bench(name: str) -> wb.Workbench:
    demo = wb.load_demo(name)
    return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


@pytest.fixture(scope="module")
def benches() -> dict[str, wb.Workbench]:
    return {name: make_bench(name) for name in ("digits-cnn", "digits-mlp", "diabetes-regressor")}


@pytest.fixture(scope="module")
def full_scans(benches) -> dict[str, pd.DataFrame]:
    """The default scan (all levels, l1 unstructured) of the two digits demos."""
    return {name: benches[name].sensitivity() for name in ("digits-cnn", "digits-mlp")}


# ---- the scan ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("demo", "method", "granularity"),
    [
        ("digits-cnn", "l1", "unstructured"),
        ("digits-mlp", "l2", "channel"),
        ("digits-mlp", "taylor", "unstructured"),
        ("diabetes-regressor", "l1", "unstructured"),
    ],
)
def test_scan_equals_fresh_evaluations(benches, demo, method, granularity) -> None:
    frame = scan(benches[demo], LEVELS, method, granularity)
    fresh = make_bench(demo)  # its own caches: nothing shared with the scanned workbench
    layers = benches[demo].layer_names
    assert list(frame["layer"]) == [n for n in layers for _ in LEVELS]
    assert list(frame["level"]) == list(LEVELS) * len(layers)
    for row in frame.to_dict("records"):
        plan = wb.PruningPlan({row["layer"]: row["level"]}, method=method, granularity=granularity)
        report = fresh.evaluate(plan)
        assert {m: row[m] for m in report.metrics} == report.metrics, row
        removed = report.layers.set_index("name").loc[row["layer"], "sparsity"]
        assert row["sparsity"] == pytest.approx(removed, abs=1e-12)


def test_scan_matches_torch_pruning_of_deep_copies(full_scans) -> None:
    demo = wb.load_demo("digits-cnn")
    inputs, targets = demo.val.tensors
    frame = full_scans["digits-cnn"].set_index(["layer", "level"])
    with torch.no_grad():
        dense = demo.model(inputs)
    for layer, level in (("features.2", 0.9), ("classifier.1", 0.99), ("features.0", 0.5)):
        model = copy.deepcopy(demo.model)
        prune.l1_unstructured(dict(model.named_modules())[layer], "weight", amount=level)
        with torch.no_grad():
            expected = compute_metrics("classification", model(inputs), targets.long(), dense)
        assert frame.loc[(layer, level), "accuracy"] == expected["accuracy"]
        assert frame.loc[(layer, level), "loss"] == pytest.approx(expected["loss"], rel=1e-12)


def test_each_layer_resumes_from_its_cut(benches) -> None:
    """The loop order lets the engine's activation cache work: every pruned point of a layer runs
    only from that layer's cut to the output (reaching into the engine's runner on purpose)."""
    bench = make_bench("digits-cnn")
    runner = bench._runner
    calls: list[tuple[int, tuple[str, ...]]] = []
    original = runner.run

    def counting(env, start, stop, weights, layer_hook=None):
        calls.append((start, tuple(weights)))
        return original(env, start, stop, weights, layer_hook)

    runner.run = counting
    scan(bench, LEVELS)
    pruned_points = [c for c in calls if c[1]]
    assert len(pruned_points) == len(bench.layer_names) * (len(LEVELS) - 1)
    for layer in bench.prunable_layers:
        starts = {start for start, weights in pruned_points if weights == (layer.weight_name,)}
        assert starts == {runner.cuts[layer.name]}, layer.name


def test_default_levels_attrs_and_workbench_method(benches) -> None:
    bench = make_bench("tabular-mlp")
    frame = bench.sensitivity()
    assert tuple(frame["level"].unique()) == DEFAULT_LEVELS
    assert list(frame.columns[:3]) == ["layer", "level", "sparsity"]
    assert set(bench.dense_metrics) <= set(frame.columns)
    assert frame.attrs["primary_metric"] == "accuracy"
    assert frame.attrs["dense"] == bench.dense_metrics
    dense_rows = frame[frame["level"] == 0]
    assert (dense_rows["accuracy"] == bench.dense_metrics["accuracy"]).all()
    again = bench.sensitivity()  # from the cache, as a copy the caller may change
    pd.testing.assert_frame_equal(again, frame)
    again.loc[0, "accuracy"] = -1.0
    assert bench.sensitivity().loc[0, "accuracy"] == frame.loc[0, "accuracy"]


def test_cancelling_leaves_no_cache_and_a_later_scan_works() -> None:
    bench = make_bench("digits-mlp")
    events = scan_iter(bench, LEVELS)
    first = [next(events) for _ in range(4)]
    assert all(isinstance(e, ScanProgress) for e in first)
    assert [e.done for e in first] == [1, 2, 3, 4] and first[0].total == 3 * len(LEVELS)
    events.close()  # what a Streamlit rerun does to an abandoned generator
    assert cached_scan(bench, LEVELS) is None
    collected = list(scan_iter(bench, LEVELS))
    assert sum(isinstance(e, ScanProgress) for e in collected) == 3 * len(LEVELS)
    frame = collected[-1]
    assert isinstance(frame, pd.DataFrame)
    pd.testing.assert_frame_equal(cached_scan(bench, LEVELS), frame)
    assert len(list(scan_iter(bench, LEVELS))) == 1  # cached: the frame only
    fresh = make_bench("digits-mlp")
    pd.testing.assert_frame_equal(scan(fresh, LEVELS), frame)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"levels": (0.0, 1.5)}, ["between 0 and 1", "1.5"]),
        ({"levels": ()}, ["at least one level"]),
        ({"subset": 0}, ["subset", "359"]),
        ({"subset": 10_000}, ["subset", "359"]),
        ({"bootstrap": -3}, ["bootstrap"]),
        ({"bootstrap": 1}, ["at least 2"]),
        ({"method": "obd"}, ["obd"]),
        ({"granularity": "3:7"}, ["3:7"]),
    ],
)
def test_bad_settings_raise_at_once(benches, options, words) -> None:
    with pytest.raises(ValueError) as error:
        scan_iter(benches["digits-mlp"], **options)
    for word in words:
        assert word in str(error.value)


def test_parse_levels() -> None:
    from workbench.analysis import parse_levels

    assert parse_levels("0, 50, 90%", percent=True) == (0.0, 0.5, 0.9)
    assert parse_levels("0.9,0,0.5,0.5") == (0.0, 0.5, 0.9)
    with pytest.raises(ScanError, match="not a number"):
        parse_levels("0, fifty")
    with pytest.raises(ScanError, match="between 0 and 100"):
        parse_levels("0, 150", percent=True)


# ---- subsets and bootstrap ---------------------------------------------------------------------


def test_subset_scan_equals_a_workbench_on_the_subset(benches) -> None:
    bench = benches["digits-mlp"]
    frame = scan(bench, LEVELS, subset=120, seed=3)
    rows = subset_indices(359, 120, 3)
    assert len(set(rows.tolist())) == 120 and torch.equal(rows, subset_indices(359, 120, 3))
    demo = wb.load_demo("digits-mlp")
    inputs, targets = demo.val.tensors
    small = wb.Workbench(demo.model, (inputs[rows], targets[rows]))
    for row in frame.to_dict("records"):
        metrics = small.evaluate(wb.PruningPlan({row["layer"]: row["level"]})).metrics
        assert {m: row[m] for m in metrics} == metrics
    assert frame.attrs["samples"] == 120


def test_subset_with_a_data_criterion_keeps_the_full_data_masks(benches) -> None:
    """taylor ranks weights with statistics of all the data (as the Prune page does); only the
    metrics are read on the subset."""
    bench = benches["digits-mlp"]
    frame = scan(bench, (0.0, 0.6), method="taylor", subset=100, seed=1)
    rows = subset_indices(359, 100, 1)
    for row in frame.to_dict("records"):
        plan = wb.PruningPlan({row["layer"]: row["level"]}, method="taylor")
        outputs = bench.outputs(plan)[rows]
        expected = compute_metrics(
            bench.task, outputs, bench.targets[rows], bench.dense_outputs[rows]
        )
        assert {m: row[m] for m in expected} == expected


def test_bootstrap_intervals_contain_the_estimate_and_follow_the_seed(benches) -> None:
    bench = benches["digits-mlp"]
    plain = scan(bench, LEVELS)
    frame = scan(bench, LEVELS, bootstrap=200, seed=7)
    metrics = list(bench.dense_metrics)
    pd.testing.assert_frame_equal(frame[plain.columns], plain)  # same point estimates
    for m in metrics:
        assert (frame[f"{m}_low"] <= frame[m]).all() and (frame[m] <= frame[f"{m}_high"]).all()
    assert (frame["accuracy_high"] - frame["accuracy_low"]).max() > 0.01  # not degenerate
    clear_cache(bench)
    pd.testing.assert_frame_equal(scan(bench, LEVELS, bootstrap=200, seed=7), frame)
    other = scan(bench, LEVELS, bootstrap=200, seed=8)
    assert not other["accuracy_low"].equals(frame["accuracy_low"])


@pytest.mark.parametrize("labelled", [True, False])
@pytest.mark.parametrize("demo", ["digits-mlp", "diabetes-regressor"])
def test_bootstrap_metrics_equal_compute_metrics_on_each_resample(demo, labelled) -> None:
    data = wb.load_demo(demo)
    inputs, targets = data.val.tensors
    bench = wb.Workbench(data.model, (inputs, targets) if labelled else inputs)
    outputs = bench.outputs(wb.PruningPlan({bench.layer_names[0]: 0.8}))
    resamples = torch.randint(
        len(inputs), (5, len(inputs)), generator=torch.Generator().manual_seed(0)
    )
    values = bootstrap_metrics(bench.task, outputs, bench.targets, bench.dense_outputs, resamples)
    for b, rows in enumerate(resamples):
        expected = compute_metrics(
            bench.task,
            outputs[rows],
            None if bench.targets is None else bench.targets[rows],
            bench.dense_outputs[rows],
        )
        assert set(values) == set(expected)
        for name, value in expected.items():
            assert values[name][b].item() == pytest.approx(value, rel=1e-12, abs=1e-12), name


# ---- views -------------------------------------------------------------------------------------


def test_tolerated_sparsity_is_the_brute_force_reading(full_scans) -> None:
    frame = full_scans["digits-cnn"]
    for max_drop in (0.0, 0.005, 0.02, 0.1):
        table = tolerated_sparsity(frame, max_drop)
        assert list(table["tolerated"]) == sorted(table["tolerated"], reverse=True)
        for row in table.itertuples():
            curve = frame[frame["layer"] == row.layer].sort_values("level")
            drops = frame.attrs["dense"]["accuracy"] - curve["accuracy"]
            ok = (drops.cummax() <= max_drop + 1e-9).to_numpy()
            expected = curve["level"].to_numpy()[ok.nonzero()[0][-1]]
            assert row.tolerated == expected


def test_drop_table_signs(benches, full_scans) -> None:
    drops = drop_table(full_scans["digits-cnn"], "loss")
    merged = drops.merge(full_scans["digits-cnn"], on=["layer", "level"])
    dense_loss = benches["digits-cnn"].dense_metrics["loss"]
    assert (merged["drop"] == merged["loss"] - dense_loss).all()  # loss: higher is worse


# ---- the budget solver -------------------------------------------------------------------------


def _layer_sparsity(proposal) -> dict[str, float]:
    return dict(
        zip(proposal.report.layers["name"], proposal.report.layers["sparsity"], strict=True)
    )


@pytest.mark.parametrize("demo", ["digits-cnn", "digits-mlp"])
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9])
def test_solver_meets_a_sparsity_target_within_one_step(benches, full_scans, demo, target) -> None:
    bench = benches[demo]
    proposals = solve_budget(bench, full_scans[demo], target=target)
    assert [p.name for p in proposals] == ["equal-drop", "uniform", "global"]
    params = bench.layers.set_index("name")["params"]
    for p in proposals:
        layers = p.report.layers
        reached = (layers["params"] - layers["nonzero"]).sum() / layers["params"].sum()
        assert p.footprint["sparsity"] == pytest.approx(reached, abs=1e-12)
        # Counts round per layer (as torch's pruning does): within half a weight per layer.
        assert target - len(layers) / (2 * params.sum()) <= reached <= target + 0.01, p.name
        assert p.meets_target
        assert p.measured == bench.evaluate(p.plan).metrics["accuracy"]
        assert p.footprint["params"] == p.report.size["nonzero_params"]
        assert p.footprint["bytes"] == p.report.size["sparse_bytes"]
        assert p.footprint["flops"] == p.report.size["flops_effective"]
        if p.plan.scope == "layer":  # whole percents, as on the Prune page's sliders
            assert all(round(v * 100) == pytest.approx(v * 100) for v in p.plan.sparsity.values())


@pytest.mark.parametrize("kind", ["params", "bytes", "flops"])
def test_solver_meets_size_targets(benches, full_scans, kind) -> None:
    bench = benches["digits-mlp"]
    dense = {"params": "nonzero_params", "bytes": "sparse_bytes", "flops": "flops_effective"}[kind]
    target = bench.dense_size[dense] * 0.3
    for p in solve_budget(bench, full_scans["digits-mlp"], target=target, kind=kind):
        assert p.report.size[dense] <= target, p.name
        assert p.report.size[dense] >= target * 0.9, p.name  # not far beyond what was asked
        assert p.footprint == footprint(bench, p.plan)


def test_solver_respects_locks_and_bounds(benches, full_scans) -> None:
    bench = benches["digits-cnn"]
    budget = Budget(
        target=0.65,
        locked={"features.0": 0.2},
        min_sparsity={"classifier.3": 0.5},
        max_sparsity={"classifier.1": 0.7},
    )
    # Bounds apply to the plan; counts then round as in torch's pruning: half a weight.
    half = 0.5 / bench.layers.set_index("name")["params"]
    for p in solve_budget(bench, full_scans["digits-cnn"], budget):
        actual = _layer_sparsity(p)
        assert p.plan.sparsity["features.0"] == 0.2, p.name
        assert actual["features.0"] == pytest.approx(0.2, abs=half["features.0"]), p.name
        assert actual["classifier.3"] >= 0.5 - half["classifier.3"], p.name
        assert actual["classifier.1"] <= 0.7 + half["classifier.1"], p.name
        assert p.meets_target and p.footprint["sparsity"] >= 0.65 - 1e-4, p.name


def test_locked_names_stay_dense(benches, full_scans) -> None:
    bench = benches["digits-mlp"]
    for p in solve_budget(bench, full_scans["digits-mlp"], target=0.6, locked=["fc3"]):
        assert _layer_sparsity(p)["fc3"] == 0.0, p.name


@pytest.mark.parametrize("demo", ["digits-cnn", "digits-mlp"])
def test_equal_drop_is_at_least_as_good_as_uniform_at_80_percent(benches, full_scans, demo) -> None:
    equal, uniform, _ = solve_budget(benches[demo], full_scans[demo], target=0.8)
    assert equal.measured >= uniform.measured
    assert equal.footprint["sparsity"] >= 0.8 - 1e-4 and uniform.footprint["sparsity"] >= 0.8 - 1e-4


def test_predicted_is_the_sum_of_single_layer_drops(benches, full_scans) -> None:
    bench, frame = benches["digits-cnn"], full_scans["digits-cnn"]
    proposals = solve_budget(bench, frame, target=0.7, interpolate=False)
    by_point = frame.set_index(["layer", "level"])["accuracy"]
    dense = bench.dense_metrics["accuracy"]
    equal = proposals[0]
    assert set(equal.plan.sparsity.values()) <= set(DEFAULT_LEVELS)  # grid mode: scanned levels
    drops = sum(dense - by_point[(n, s)] for n, s in equal.plan.sparsity.items())
    assert equal.predicted == pytest.approx(dense - drops, abs=1e-12)
    assert equal.predicted_drop == pytest.approx(drops, abs=1e-12)
    assert equal.interaction == pytest.approx(equal.measured_drop - drops, abs=1e-12)
    # every layer stays within the common drop on its own curve
    for n, s in equal.plan.sparsity.items():
        assert dense - by_point[(n, s)] <= equal.common_drop + 1e-12


def test_max_drop_without_a_target(benches, full_scans) -> None:
    """Without a target each proposal goes as far as its measured drop allows."""
    bench = benches["digits-mlp"]
    proposals = solve_budget(bench, full_scans["digits-mlp"], max_drop=0.02)
    for p in proposals:
        assert p.meets_target and p.within_max_drop, p.name  # no target to miss
        assert p.measured_drop <= 0.02 + 1e-12, p.name
        assert p.measured == bench.evaluate(p.plan).metrics["accuracy"], p.name
        if p.unrefined is not None:  # refined: its first allocation is what the notes say
            first = bench.evaluate(p.unrefined).metrics["accuracy"]
            assert first == p.unrefined_measured, p.name
    assert proposals[0].footprint["sparsity"] > 0.5  # robust layers take a lot within 2 points


def test_max_drop_already_spent_by_a_locked_layer(benches, full_scans) -> None:
    """A lock that alone costs more than the max drop leaves the free layers only what costs
    nothing on their curves."""
    frame = full_scans["digits-mlp"]
    bench = benches["digits-mlp"]
    equal = solve_budget(bench, frame, max_drop=0.01, locked={"fc3": 0.99})[0]
    dense = bench.dense_metrics["accuracy"]
    by_point = frame.set_index(["layer", "level"])["accuracy"]
    for layer in ("fc1", "fc2"):
        s = equal.plan.sparsity.get(layer, 0.0)
        levels = [v for v in DEFAULT_LEVELS if v <= s]
        assert all(dense - by_point[(layer, v)] <= 1e-12 for v in levels), layer
        above = min(v for v in DEFAULT_LEVELS if v > s)
        assert dense - by_point[(layer, above)] > 0, layer  # stopped at the end of its plateau


def test_unreachable_target_is_flagged(benches, full_scans) -> None:
    bench = benches["digits-mlp"]
    equal, uniform, _ = solve_budget(
        bench,
        full_scans["digits-mlp"],
        target=0.95,
        max_sparsity=dict.fromkeys(bench.layer_names, 0.5),
    )
    assert not equal.meets_target and not uniform.meets_target
    assert equal.notes and all(v <= 0.5 for v in equal.plan.sparsity.values())


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"target": 0.8, "locked": {"fc9": 0.1}}, ["fc9"]),
        (
            {"target": 0.8, "min_sparsity": {"fc1": 0.6}, "max_sparsity": {"fc1": 0.4}},
            ["fc1", "60%"],
        ),
        ({}, ["target", "maximum drop"]),
        ({"target": 1.5}, ["between 0 and 1"]),
        ({"target": 10, "kind": "watts"}, ["watts"]),
        ({"target": 0.8, "metric": "bleu"}, ["bleu"]),
    ],
)
def test_bad_budgets_raise_precise_errors(benches, full_scans, fields, words) -> None:
    with pytest.raises(BudgetError) as error:
        solve_budget(benches["digits-mlp"], full_scans["digits-mlp"], **fields)
    for word in words:
        assert word in str(error.value)


def test_a_fixed_pattern_or_another_models_scan_is_refused(benches, full_scans) -> None:
    bench = benches["digits-mlp"]
    pattern = scan(bench, (0.0, 0.5), granularity="2:4")
    with pytest.raises(BudgetError, match="fixed sparsity"):
        solve_budget(bench, pattern, target=0.5)
    with pytest.raises(BudgetError, match="does not match"):
        solve_budget(bench, full_scans["digits-cnn"], target=0.5)


# ---- command line ------------------------------------------------------------------------------


def test_cli_csv_equals_the_api(tmp_path, capsys) -> None:
    out = tmp_path / "scan.csv"
    argv = ["sensitivity", "--demo", "digits-mlp", "--levels", "0,0.5,0.9"]
    assert cli_main([*argv, "--bootstrap", "50", "--csv", str(out)]) == 0
    assert "[9/9]" in capsys.readouterr().err
    expected = make_bench("digits-mlp").sensitivity(levels=(0, 0.5, 0.9), bootstrap=50)
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, check_exact=True)
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:4] == ["layer", "level", "sparsity", "accuracy"]
    assert len(printed) == 1 + 9
    assert cli_main([*argv[:3], "--levels", "0,2"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_iter_scan_is_the_one_progress_protocol() -> None:
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val)
    wb.analysis.clear_cache(bench)
    events = list(wb.iter_scan(bench, levels=[0, 0.5]))
    assert all(isinstance(e, wb.Progress) for e in events)
    assert [e.finished for e in events] == [False] * (len(events) - 1) + [True]
    assert events[-2].fraction == 1.0 and " at " in events[0].message
    pd.testing.assert_frame_equal(events[-1].result, wb.sensitivity(bench, levels=[0, 0.5]))
    assert wb.drain(wb.iter_scan(bench, levels=[0, 0.5])).equals(events[-1].result)


# ---- one pass over a layer's levels ------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [1 << 30, 1])  # whole batches; slices of 64 samples
def test_levels_in_one_pass_equal_each_plan_alone(chunk_bytes) -> None:
    """`outputs_of_levels`, the scan's path, against `outputs` plan by plan, bit for bit, on a
    residual network with BatchNorm (batches of 110 and 90) and on a demo."""
    model, (inputs, targets) = scale_workload(samples=200)
    residual = wb.Workbench(model, (inputs, targets), batch_size=110, device="cpu")
    for bench in (residual, make_bench("digits-cnn")):
        for layer in bench.layer_names[::7]:
            plans = [wb.PruningPlan({layer: level}) for level in (0.3, 0.7, 0.95)]
            plans.append(wb.PruningPlan({layer: 0.5}, granularity="channel"))
            together = bench.outputs_of_levels(plans, chunk_bytes=chunk_bytes)
            for plan, outputs in zip(plans, together, strict=True):
                assert torch.equal(outputs, bench.outputs(plan)), (layer, plan)
    assert residual.outputs_of_levels([]) == []


def test_slices_that_round_otherwise_fall_back_to_whole_batches(monkeypatch) -> None:
    bench = make_bench("digits-cnn")
    monkeypatch.setattr(bench, "_slices_exact", lambda *args: False)
    plans = [wb.PruningPlan({"features.0": level}) for level in (0.3, 0.9)]
    for plan, outputs in zip(plans, bench.outputs_of_levels(plans, chunk_bytes=1), strict=True):
        assert torch.equal(outputs, bench.outputs(plan))
