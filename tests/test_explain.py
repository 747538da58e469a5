"""Captum attributions, layer importance and the attribution criteria, checked against oracles:
direct Captum calls, Integrated Gradients' completeness, a by-hand ranking, the taylor
statistic, and models where the answer is known by construction."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import (
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    LayerActivation,
    LayerConductance,
    LayerGradientXActivation,
    Occlusion,
    Saliency,
)
from torch import nn

import workbench as wb
import workbench.explain as ex

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


def tiny_classifier(seed: int = 0, n: int = 96) -> wb.Workbench:
    """A seeded Conv1d → Linear → Linear classifier on random signals (every layer a module)."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv1d(2, 6, 3),  # (N, 6, 8)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(48, 7),
        nn.ReLU(),
        nn.Linear(7, 3),
    ).eval()
    x = torch.randn(n, 2, 10)
    y = torch.randint(0, 3, (n,))
    return wb.Workbench(model, (x, y), batch_size=40)


def per_channel_mean(attr: torch.Tensor, linear: bool) -> torch.Tensor:
    """By hand: mean over samples of |attribution| summed over each channel's positions."""
    values = attr.detach().abs().double()
    if not linear:
        values = values.flatten(2).sum(dim=2)
    return values.mean(dim=0)


# ---- input attributions ------------------------------------------------------------------


def _captum(method: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    x = x.clone().requires_grad_(True)
    if method == "integrated_gradients":
        return IntegratedGradients(model).attribute(
            x, baselines=0.0, target=target, n_steps=50, return_convergence_delta=True
        )
    if method == "saliency":
        return Saliency(model).attribute(x, target=target), None
    if method == "input_x_gradient":
        return InputXGradient(model).attribute(x, target=target), None
    if method == "occlusion":  # 8×8 digits: 2×2 patches, stride 1
        return Occlusion(model).attribute(
            x.detach(), sliding_window_shapes=(1, 2, 2), strides=(1, 1, 1), target=target
        ), None
    raise AssertionError(method)


@pytest.mark.parametrize(
    "method", ["integrated_gradients", "saliency", "input_x_gradient", "occlusion"]
)
def test_attributions_equal_direct_captum_calls(digits: wb.Workbench, method: str) -> None:
    plan = wb.PruningPlan({"features.2": 0.6, "classifier.1": 0.5})
    indices = [3, 0, 17, 42, 5, 8]
    # A small batch forces several Captum calls: batching must not change the result.
    result = ex.attribute(digits, indices, method, plan, batch_size=120)
    model = digits.pruned_model(plan)
    x = digits.val_inputs[indices]
    predicted = model(x).argmax(dim=1)
    expected, delta = _captum(method, model, x, predicted)
    assert result.attributions.shape == x.shape
    torch.testing.assert_close(result.targets, predicted)
    torch.testing.assert_close(result.attributions, expected, rtol=1e-4, atol=1e-5)
    if delta is None:
        assert result.delta is None
    else:
        torch.testing.assert_close(result.delta, delta, rtol=1e-3, atol=1e-4)


def test_gradient_shap_equals_seeded_captum_call(digits: wb.Workbench) -> None:
    indices = [1, 2, 3, 4]
    result = ex.attribute(digits, indices, "gradient_shap", n_samples=12, stdevs=0.05, seed=7)
    model = digits.pruned_model(wb.PruningPlan())
    x = digits.val_inputs[indices]
    target = model(x).argmax(dim=1)
    np.random.seed(7)  # GradientSHAP draws its path points from numpy, its baselines from torch
    torch.manual_seed(7)
    expected, delta = GradientShap(model).attribute(
        x.clone().requires_grad_(True),
        baselines=digits.val_inputs,
        n_samples=12,
        stdevs=0.05,
        target=target,
        return_convergence_delta=True,
    )
    torch.testing.assert_close(result.attributions, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.delta, delta.reshape(4, 12).mean(dim=1))
    # Seeded: the same request again (past the cache) gives the same map.
    ex.clear_cache(digits)
    again = ex.attribute(digits, indices, "gradient_shap", n_samples=12, stdevs=0.05, seed=7)
    torch.testing.assert_close(again.attributions, result.attributions)


def test_integrated_gradients_sum_to_the_output_change_within_delta(digits: wb.Workbench) -> None:
    plan = wb.PruningPlan({"features.2": 0.6})
    result = digits.attribute(range(12), plan=plan, n_steps=100)
    model = digits.pruned_model(plan)
    with torch.no_grad():
        at_input = model(result.inputs).gather(1, result.targets[:, None])[:, 0]
        at_baseline = model(torch.zeros_like(result.inputs)).gather(1, result.targets[:, None])
    change = at_input - at_baseline[:, 0]
    total = result.attributions.flatten(1).sum(dim=1)
    # The reported delta is exactly what the attributions miss by...
    torch.testing.assert_close(total - change, result.delta, rtol=0, atol=1e-4)
    assert ((total - change).abs() <= result.delta.abs() + 1e-4).all()
    # ...and it is small: the integral converged.
    assert (result.delta.abs() < 0.01 * change.abs()).all()
    torch.testing.assert_close(result.scores, at_input)


def input_column_model() -> tuple[wb.Workbench, wb.PruningPlan]:
    """A classifier whose smallest first-layer weights are exactly those reading feature 2:
    L1 pruning of 1/4 of that layer removes the feature entirely."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(8, 4).sign() * (0.5 + torch.rand(8, 4)))
        model[0].weight[:, 2] *= 0.01
    x = torch.randn(64, 4) + 1.0
    y = torch.randint(0, 3, (64,))
    return wb.Workbench(model, (x, y)), wb.PruningPlan({"0": 0.25})


@pytest.mark.parametrize("method", list(ex.ATTRIBUTION_METHODS))
def test_pruned_map_is_zero_on_a_removed_input_feature(method: str) -> None:
    bench, plan = input_column_model()
    keep = bench.masks(plan)["0"]
    assert not keep[:, 2].any() and keep[:, [0, 1, 3]].all()  # the plan cuts feature 2 off
    indices = list(range(10))
    dense = ex.attribute(bench, indices, method, target="true")
    pruned = ex.attribute(bench, indices, method, plan, target="true")
    assert dense.attributions[:, 2].abs().max() > 1e-4
    # Zero up to rounding: occlusion subtracts two outputs that differ only by summation order
    # (7e-9 on some CPUs), so the tolerance is float32's epsilon relative to the map's scale.
    scale = float(pruned.attributions.abs().max())
    tolerance = 16 * torch.finfo(pruned.attributions.dtype).eps * scale
    assert float(pruned.attributions[:, 2].abs().max()) <= tolerance
    # The maps differ where the weights went, and the cosine similarity says so.
    assert not torch.allclose(pruned.attributions, dense.attributions)
    similarity = ex.map_similarity(dense, pruned)
    finite = similarity[np.isfinite(similarity)]  # a map of zeros has no direction
    assert similarity.shape == (10,) and len(finite) and (finite < 1).all()


def test_targets_predictions_and_confidence(digits: wb.Workbench) -> None:
    result = digits.attribute([0, 1], method="saliency", target="true")
    probabilities = digits.dense_outputs[[0, 1]].softmax(dim=1)
    torch.testing.assert_close(result.targets, digits.targets[[0, 1]])
    torch.testing.assert_close(result.predictions, probabilities.argmax(dim=1))
    torch.testing.assert_close(result.confidence, probabilities.max(dim=1).values)
    fixed = digits.attribute([0, 1], method="saliency", target=4)
    assert fixed.targets.tolist() == [4, 4]
    table = result.table(digits.class_names)
    assert list(table["index"]) == [0, 1] and list(table["label"]) == ["5", "9"]


def test_regression_target_is_the_single_output() -> None:
    demo = wb.load_demo("diabetes-regressor")
    bench = wb.Workbench(demo.model, demo.val)
    result = bench.attribute([0, 1, 2], n_steps=64)
    assert result.targets is None and torch.isnan(result.confidence).all()
    with torch.no_grad():
        change = demo.model(result.inputs) - demo.model(torch.zeros_like(result.inputs))
    total = result.attributions.sum(dim=1)
    torch.testing.assert_close(total - change, result.delta, rtol=0, atol=1e-3)
    torch.testing.assert_close(result.predictions, bench.dense_outputs[:3])
    with pytest.raises(ex.ExplainError, match="single output"):
        bench.attribute([0], target=3)


def test_results_are_cached_per_model_state_method_and_samples(digits: wb.Workbench) -> None:
    plan = wb.PruningPlan({"features.2": 0.3})
    first = ex.attribute(digits, [4, 5], "saliency", plan)
    assert ex.attribute(digits, [4, 5], "saliency", plan) is first
    assert ex.attribute(digits, [4, 5], "saliency", None) is not first
    assert ex.attribute(digits, [5, 4], "saliency", plan) is not first
    dense = ex.attribute(digits, [4, 5], "saliency", wb.PruningPlan({"features.2": 0.0}))
    assert dense is ex.attribute(digits, [4, 5], "saliency")  # an all-zero plan is the dense model


def test_bad_requests_raise_precise_errors(digits: wb.Workbench) -> None:
    n = len(digits.targets)
    with pytest.raises(IndexError, match=f"sample index {n} is out of range.*0 to {n - 1}"):
        digits.attribute([0, n])
    with pytest.raises(ex.SampleIndexError):
        digits.attribute(-1)
    with pytest.raises(ex.ExplainError, match="unknown attribution method 'deeplift'"):
        digits.attribute([0], method="deeplift")
    with pytest.raises(ex.ExplainError, match="has no option 'steps'"):
        digits.attribute([0], steps=10)
    with pytest.raises(ex.ExplainError, match="n_steps must be at least 2"):
        digits.attribute([0], n_steps=1)
    with pytest.raises(ex.ExplainError, match="integers"):
        digits.attribute([0.5])
    with pytest.raises(ex.ExplainError, match="at least one sample"):
        digits.attribute([])
    with pytest.raises(ex.ExplainError, match="out of range.*10 classes"):
        digits.attribute([0], target=10)
    with pytest.raises(ex.ExplainError, match="unknown layer-importance method"):
        digits.layer_importance("deeplift")
    with pytest.raises(ex.ExplainError, match="unknown layer"):
        ex.layer_importance(digits, "activation", layers=["features.9"])
    with pytest.raises(wb.PlanError, match="unknown layer"):
        digits.attribute([0], plan=wb.PruningPlan({"nope": 0.5}))


def test_map_view_lays_out_every_input_kind(digits: wb.Workbench) -> None:
    image = ex.map_view(digits.attribute([0, 1], method="saliency"))
    assert image.kind == "image" and image.values.shape == (2, 8, 8)
    flat = wb.load_demo("digits-mlp")
    view = ex.map_view(
        ex.attribute(wb.Workbench(flat.model, flat.val), [0], "saliency", input_kind="image")
    )
    assert view.kind == "image" and view.values.shape == (1, 8, 8)  # 64 pixels back to 8×8
    bench = tiny_classifier()
    signal = ex.map_view(ex.attribute(bench, [0, 1, 2], "input_x_gradient"))
    assert signal.kind == "signal" and signal.values.shape == (3, 10)  # channels summed
    result = ex.attribute(bench, [0], "input_x_gradient")
    np.testing.assert_allclose(
        signal.values[0], result.attributions[0].sum(dim=0).numpy(), rtol=1e-6
    )


# ---- layer importance --------------------------------------------------------------------


@pytest.mark.parametrize("method", list(ex.LAYER_METHODS))
def test_layer_importance_equals_captum_layer_by_layer(method: str) -> None:
    bench = tiny_classifier()
    table = ex.layer_importance(bench, method, samples=None, n_steps=20)
    layers = bench.prunable_layers
    assert list(table.columns) == ["layer", "kind", "channel", "importance", "share", "rank"]
    assert len(table) == sum(layer.channels for layer in layers)
    model, x = bench.model, bench.val_inputs
    target = model(x).argmax(dim=1)
    for layer in layers:
        module = model.get_submodule(layer.name)
        if method == "conductance":
            attr = LayerConductance(model, module).attribute(x, target=target, n_steps=20)
        elif method == "gradient_x_activation":
            attr = LayerGradientXActivation(model, module).attribute(x, target=target)
        else:
            attr = LayerActivation(model, module).attribute(x)
        expected = per_channel_mean(attr, layer.kind == "Linear")
        rows = table[table["layer"] == layer.name]
        np.testing.assert_allclose(rows["importance"], expected.numpy(), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(rows["share"].sum(), 1.0)
        assert sorted(rows["rank"]) == list(range(1, layer.channels + 1))
        assert rows.loc[rows["importance"].idxmax(), "rank"] == 1


def test_layer_importance_on_a_pruned_model_and_marks(digits: wb.Workbench) -> None:
    plan = wb.PruningPlan({"features.2": 0.5}, granularity="channel")
    dense = digits.layer_importance("activation", samples=64)
    pruned = digits.layer_importance("activation", plan, samples=64)
    removed = ~digits.masks(plan)["features.2"].reshape(32, -1).any(dim=1)
    marked = ex.mark_plan(dense, digits, plan)
    rows = marked[marked["layer"] == "features.2"]
    assert rows["removed"].tolist() == removed.tolist()
    assert (marked.loc[marked["layer"] != "features.2", "kept"] == 1).all()
    # A removed filter is removed whole, bias included: its activation is zero everywhere.
    after = pruned[pruned["layer"] == "features.2"]["importance"].to_numpy()
    assert (after[removed.numpy()] == 0).all() and (after[~removed.numpy()] > 0).all()
    cost = ex.plan_cost(marked).set_index("layer")
    assert cost.loc["features.2", "removed"] == 16
    expected = rows.loc[rows["removed"], "importance"].sum() / rows["importance"].sum()
    assert cost.loc["features.2", "removed_importance"] == pytest.approx(expected)


def test_criterion_statistic_is_the_dense_layer_importance() -> None:
    bench = tiny_classifier()
    for method in ("conductance", "gradient_x_activation"):
        table = ex.layer_importance(
            bench, method, samples=ex.CRITERION_SAMPLES, n_steps=ex.CRITERION_STEPS
        )
        for layer in bench.prunable_layers:
            statistic = bench.statistics.channel_attribution(layer, method)
            rows = table[table["layer"] == layer.name]
            np.testing.assert_allclose(statistic.numpy(), rows["importance"], rtol=1e-5)


def test_weight_importance_is_the_taylor_statistic(digits: wb.Workbench) -> None:
    for layer in digits.prunable_layers:
        ours = ex.weight_importance(digits, layer.name)
        torch.testing.assert_close(ours, digits.statistics.taylor(layer).double())
    plan = wb.PruningPlan({"classifier.1": 0.7})
    pruned = ex.weight_importance(digits, "classifier.1", plan, samples=100)
    assert (pruned[~digits.masks(plan)["classifier.1"]] == 0).all()  # w = 0 there
    with pytest.raises(ex.ExplainError, match="unknown layer"):
        ex.weight_importance(digits, "features.7")


def test_graph_only_layers_give_a_clear_error() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(5, 4))
            self.w2 = nn.Parameter(torch.randn(3, 5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(F.relu(F.linear(x, self.w1)), self.w2)

    torch.manual_seed(0)
    bench = wb.Workbench(Functional(), (torch.randn(20, 4), torch.randint(0, 3, (20,))))
    with pytest.raises(ex.ExplainError, match="no prunable layer of this model can be hooked"):
        bench.layer_importance("activation")
    with pytest.raises(ex.ExplainError, match="has no module"):
        ex.layer_importance(bench, "activation", layers=["w1"])
    # Input attributions only need the forward pass: they still work.
    assert bench.attribute([0, 1], method="saliency").attributions.shape == (2, 4)


# ---- the attribution criteria ------------------------------------------------------------


def by_hand_channel_scores(bench: wb.Workbench, method: str) -> dict[str, torch.Tensor]:
    model, x = bench.model, bench.val_inputs
    target = model(x).argmax(dim=1)
    scores = {}
    for layer in bench.prunable_layers:
        module = model.get_submodule(layer.name)
        if method == "conductance":
            attr = LayerConductance(model, module).attribute(
                x, target=target, n_steps=ex.CRITERION_STEPS
            )
        else:
            attr = LayerGradientXActivation(model, module).attribute(x, target=target)
        scores[layer.name] = per_channel_mean(attr, layer.kind == "Linear")
    return scores


@pytest.mark.parametrize("method", ["conductance", "gradient_x_activation"])
def test_attribution_criteria_masks_match_a_by_hand_ranking(method: str) -> None:
    bench = tiny_classifier()
    assert method in wb.CRITERIA and wb.CRITERIA[method].needs_data
    hand = by_hand_channel_scores(bench, method)
    for layer in bench.prunable_layers[:2]:
        for sparsity in (0.3, 0.5):
            plan = wb.PruningPlan({layer.name: sparsity}, method=method, granularity="channel")
            removed = ~bench.masks(plan)[layer.name].reshape(layer.channels, -1).any(dim=1)
            count = round(sparsity * layer.channels)
            expected = torch.zeros(layer.channels, dtype=torch.bool)
            expected[torch.argsort(hand[layer.name], stable=True)[:count]] = True
            assert removed.tolist() == expected.tolist(), (layer.name, sparsity)
    # Single weights: the channel's score split by |w|·‖x‖ (see criteria/_attribution.py).
    layer = bench.prunable_layers[1]  # Linear(48, 7)
    weight = bench.dense_weight(layer.name).double()
    captured = []  # the layer's inputs, observed by hand
    handle = bench.model.get_submodule(layer.name).register_forward_hook(
        lambda _m, inputs, _o: captured.append(inputs[0].detach())
    )
    bench.model(bench.val_inputs)
    handle.remove()
    # As the wanda statistic: squares summed in float64, the norm taken in the weight's float32.
    norms = captured[0].double().square().sum(dim=0).float().sqrt().double()
    carried = weight.abs() * norms
    per_weight = hand[layer.name][:, None] * carried / carried.sum(dim=1, keepdim=True)
    plan = wb.PruningPlan({layer.name: 0.4}, method=method)
    removed = ~bench.masks(plan)[layer.name].reshape(-1)
    expected = torch.zeros(layer.params, dtype=torch.bool)
    expected[torch.argsort(per_weight.reshape(-1), stable=True)[: round(0.4 * layer.params)]] = True
    assert removed.tolist() == expected.tolist()


def test_attribution_criteria_are_deterministic() -> None:
    plans = [
        wb.PruningPlan.uniform(["0", "3"], 0.5, method=m, granularity=g)
        for m in ("conductance", "gradient_x_activation")
        for g in ("channel", "unstructured")
    ]
    first, second = tiny_classifier(), tiny_classifier()
    for plan in plans:
        a, b = first.masks(plan), second.masks(plan)
        assert all(torch.equal(a[name], b[name]) for name in a)
        assert all(torch.equal(a[name], first.masks(plan)[name]) for name in a)


def test_overlap_with_magnitude_by_hand(digits: wb.Workbench) -> None:
    overlap = ex.criterion_overlap(digits, "features.2", 0.5, "gradient_x_activation")
    sets = []
    for method in ("gradient_x_activation", "l1"):
        plan = wb.PruningPlan({"features.2": 0.5}, method=method, granularity="channel")
        mask = digits.masks(plan)["features.2"].reshape(32, -1)
        sets.append(set((~mask.any(dim=1)).nonzero().reshape(-1).tolist()))
        value = digits.evaluate(plan).metrics["accuracy"]
        assert value == (overlap.value if method != "l1" else overlap.baseline_value)
    assert set(overlap.removed.tolist()) == sets[0] and len(sets[0]) == 16
    assert overlap.jaccard == pytest.approx(len(sets[0] & sets[1]) / len(sets[0] | sets[1]))
    curve = ex.run_to_end(
        ex.iter_overlap_curve(digits, "features.2", "gradient_x_activation", sparsities=(0.5,))
    )
    assert curve.loc[0, "jaccard"] == pytest.approx(overlap.jaccard)


# ---- samples, the Workbench API, imports ----------------------------------------------------


def test_samples_broken_by_a_plan(digits: wb.Workbench) -> None:
    plan = wb.PruningPlan({"features.2": 0.9, "classifier.1": 0.9})
    broken = ex.broken_by_plan(digits, plan)
    predicted = digits.outputs(plan).argmax(dim=1)
    wrong = set((predicted != digits.targets).nonzero().reshape(-1).tolist())
    assert set(broken) == wrong and len(broken) == len(wrong) > 0
    dense_right = (digits.dense_outputs.argmax(dim=1) == digits.targets).tolist()
    newly = [dense_right[i] for i in broken]
    assert newly == sorted(newly, reverse=True)  # those the dense model got right come first
    assert ex.samples_of_class(digits, 3) == (digits.targets == 3).nonzero().reshape(-1).tolist()


def test_progress_events_end_with_the_result(digits: wb.Workbench) -> None:
    ex.clear_cache(digits)
    events = list(ex.iter_attribute(digits, range(10), n_steps=50, batch_size=100))
    assert [e.done for e in events] == [2, 4, 6, 8, 10]  # two samples of 50 steps per batch
    assert all(e.result is None for e in events[:-1]) and events[-1].finished
    assert events[-1].result.attributions.shape == (10, 1, 8, 8)


def test_import_workbench_leaves_captum_unloaded() -> None:
    probe = "import sys, workbench; print('captum' in sys.modules, 'streamlit' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    assert "integrated_gradients" in wb.ATTRIBUTION_METHODS and "conductance" in wb.LAYER_METHODS


def test_concurrent_maps_and_layer_tables_match_serial_ones(digits: wb.Workbench) -> None:
    """Layer hooks on the shared model copy must not catch another thread's forward passes."""
    ex.clear_cache(digits)
    serial_table = ex.layer_importance(digits, "conductance", samples=None, n_steps=8)
    serial_maps = ex.attribute(digits, range(40), n_steps=20)
    ex.clear_cache(digits)
    results: dict[str, object] = {}

    def tables() -> None:
        results["table"] = ex.layer_importance(digits, "conductance", samples=None, n_steps=8)

    def maps() -> None:
        results["maps"] = ex.attribute(digits, range(40), n_steps=20)

    threads = [threading.Thread(target=tables), threading.Thread(target=maps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(
        results["table"]["importance"], serial_table["importance"], rtol=1e-5
    )
    torch.testing.assert_close(results["maps"].attributions, serial_maps.attributions)


def test_no_private_captum_modules_are_imported() -> None:
    # Captum's private modules change without notice; the explain package uses its public API.
    private = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in (ROOT / "workbench").rglob("*.py")
        for line in path.read_text().splitlines()
        if "captum" in line and ("._" in line or "_utils" in line) and "import" in line
    ]
    assert not private, private
