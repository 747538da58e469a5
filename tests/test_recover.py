"""Recovery: fine-tuning holds the plan's zeros, distillation, gradual (AGP) schedules, cancel.

Oracles: `torch.nn.utils.prune` (the masks and the reparametrised training), scikit-learn's
metrics on an independent run of the recovered model, the polynomial of TF-MOT's PolynomialDecay.
"""

from __future__ import annotations

import copy
import math
import threading

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, r2_score
from torch.nn.utils import prune

import workbench as wb
from workbench.evaluate.modelling import named_tensor
from workbench.recover import MaskHold


@pytest.fixture(scope="module")
def mlp() -> wb.Demo:
    return wb.load_demo("digits-mlp")


@pytest.fixture(scope="module")
def bench(mlp: wb.Demo) -> wb.Workbench:
    return wb.Workbench(mlp.model, mlp.val)


@pytest.fixture(scope="module")
def plan(bench: wb.Workbench) -> wb.PruningPlan:
    return wb.PruningPlan.uniform(bench.layer_names, 0.9, scope="global")


@pytest.fixture(scope="module")
def run(bench: wb.Workbench, plan: wb.PruningPlan, mlp: wb.Demo) -> wb.Recovery:
    return wb.finetune(bench, plan, mlp.train, epochs=2, lr=3e-3, seed=0)


def _weights(model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    return {name: named_tensor(model, name).detach() for name in names}


def test_pruned_weights_stay_exactly_zero_and_the_masks_are_the_plans(
    run: wb.Recovery, bench: wb.Workbench, plan: wb.PruningPlan
) -> None:
    plan_masks = bench.masks(plan)
    weights = _weights(run.model, [layer.weight_name for layer in bench.prunable_layers])
    for layer in bench.prunable_layers:
        module = run.model.get_submodule(layer.name)
        # torch.nn.utils.prune's reparametrisation: weight = weight_orig * weight_mask
        assert prune.is_pruned(module)
        assert torch.equal(module.weight_mask.bool(), plan_masks[layer.name])
        assert torch.equal(run.masks[layer.weight_name], plan_masks[layer.name])
        weight = weights[layer.weight_name]
        assert (weight[~plan_masks[layer.name]] == 0).all()
        assert (weight[plan_masks[layer.name]] != 0).float().mean() > 0.99  # it trained


def test_the_run_takes_every_batch_of_every_epoch(run: wb.Recovery, mlp: wb.Demo) -> None:
    steps = 2 * math.ceil(len(mlp.train) / 64)
    assert run.history["step"].tolist() == list(range(steps + 1))  # 0: before training
    assert run.stopped == "finished"


def test_training_further_keeps_the_zeros(run: wb.Recovery, mlp: wb.Demo) -> None:
    model = copy.deepcopy(run.model)  # the module fixture stays as the run left it
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = mlp.train.tensors
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[:64]), y[:64]).backward()
        opt.step()
    for name, keep in run.masks.items():
        assert (named_tensor(model, name)[~keep] == 0).all()


def test_the_dense_model_and_the_workbench_are_unchanged(
    mlp: wb.Demo, plan: wb.PruningPlan
) -> None:
    before = {k: v.clone() for k, v in mlp.model.state_dict().items()}
    bench = wb.Workbench(mlp.model, mlp.val)
    pruned_before = bench.evaluate(plan)
    dense_weights = {n: bench.dense_weight(n).clone() for n in bench.layer_names}
    wb.finetune(bench, plan, mlp.train, epochs=1)
    for key, value in mlp.model.state_dict().items():
        assert torch.equal(value, before[key])
    for name in bench.layer_names:
        assert torch.equal(bench.dense_weight(name), dense_weights[name])
    after = bench.evaluate(plan)
    assert after.metrics == pruned_before.metrics
    assert after.size == pruned_before.size


def test_the_report_equals_an_independent_evaluation(
    run: wb.Recovery, bench: wb.Workbench, mlp: wb.Demo
) -> None:
    x, y = mlp.val.tensors
    run.model.eval()
    with torch.no_grad():
        predicted = run.model(x).argmax(dim=1)
    assert run.report.metrics["accuracy"] == pytest.approx(accuracy_score(y, predicted), abs=1e-12)
    nonzero = sum(
        int((named_tensor(run.model, layer.weight_name) != 0).sum())
        for layer in bench.prunable_layers
    )
    assert int(run.report.layers["nonzero"].sum()) == nonzero
    assert run.report.size["nonzero_params"] <= bench.dense_size["nonzero_params"]
    # the best checkpoint is the one the history's best evaluation saw
    evaluated = run.history.dropna(subset=["accuracy"])
    assert run.report.metrics["accuracy"] == pytest.approx(evaluated["accuracy"].max())


def test_fine_tuning_recovers_accuracy(run: wb.Recovery, bench: wb.Workbench) -> None:
    one_shot = bench.evaluate(run.plan).metrics["accuracy"]
    assert run.report.metrics["accuracy"] > one_shot + 0.05
    assert run.best_step > 0


def test_masked_training_equals_torch_prune_reparametrisation(
    bench: wb.Workbench, plan: wb.PruningPlan, mlp: wb.Demo
) -> None:
    """The engine's way (gradients masked, zeros re-written after each step) and
    torch.nn.utils.prune's weight_orig * weight_mask train to the same weights."""
    x, y = mlp.train.tensors[0][:256], mlp.train.tensors[1][:256]
    reference = wb.masked_model(bench, plan)  # torch.nn.utils.prune
    held = bench.pruned_model(plan)
    for p in held.parameters():
        p.requires_grad_(True)
    hold = MaskHold(held, bench.kept(plan))
    optimisers = [
        torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.1) for m in (reference, held)
    ]
    for step in range(5):
        batch = slice(step * 32, (step + 1) * 32)
        for model, opt in zip((reference, held), optimisers, strict=True):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
        hold.apply()
    names = [layer.weight_name for layer in bench.prunable_layers]
    for name, a in _weights(reference, names).items():
        assert torch.equal(a, _weights(held, [name])[name])


def test_gradual_schedule_follows_the_polynomial_and_ends_at_the_plan(
    bench: wb.Workbench, mlp: wb.Demo
) -> None:
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.8)  # each layer 80 %
    schedule = wb.Schedule.agp(start=0.1, steps=30, every=5, begin=4)
    run = wb.finetune(bench, plan, mlp.train, epochs=2, schedule=schedule, patience=None)
    total = sum(layer.params for layer in bench.prunable_layers)
    resolved = schedule.resolved(len(run.history) - 1)  # the rows after step 0
    last_pruning = None
    for row in run.history.itertuples():
        step = row.step - 1  # the row records the state after pruning at `step`, then training
        if resolved.prunes_at(step):
            last_pruning = step
        if last_pruning is None:
            # before the first pruning the run holds the initial sparsity
            expected = sum(round(0.1 * layer.params) for layer in bench.prunable_layers) / total
        else:
            expected = (
                sum(
                    round(resolved.sparsity(0.8, last_pruning) * layer.params)
                    for layer in bench.prunable_layers
                )
                / total
            )
        assert row.sparsity == pytest.approx(expected, abs=len(bench.layer_names) / total)
    # exactly the plan's count of zeros in every layer at the end
    counts = bench.evaluate(plan).layers.set_index("name")["nonzero"]
    for layer in bench.prunable_layers:
        assert int(run.masks[layer.weight_name].sum()) == counts[layer.name]
        weight = named_tensor(run.model, layer.weight_name)
        assert int((weight != 0).sum()) <= counts[layer.name]
    assert resolved.sparsity(0.8, 4) == pytest.approx(0.1)
    assert resolved.sparsity(0.8, 34) == 0.8
    assert resolved.sparsity(0.8, 19) == pytest.approx(0.8 + (0.1 - 0.8) * 0.5**3)


def test_schedules_that_cannot_run_are_refused() -> None:
    with pytest.raises(wb.WorkbenchError, match="reaches its target at step 100"):
        wb.Schedule.agp(steps=100).resolved(50)
    with pytest.raises(wb.WorkbenchError, match="initial sparsity"):
        wb.Schedule.agp(start=1.0)


def test_distillation_alone_recovers_without_targets(
    bench: wb.Workbench, plan: wb.PruningPlan, mlp: wb.Demo
) -> None:
    unlabelled = mlp.train.tensors[0]
    with pytest.raises(wb.WorkbenchError, match="no targets"):
        wb.finetune(bench, plan, unlabelled, distill=0.0)
    run = wb.finetune(bench, plan, unlabelled, epochs=2, lr=3e-3, distill=1.0)
    one_shot = bench.evaluate(plan).metrics
    assert run.report.metrics["agreement"] > one_shot["agreement"] + 0.05
    # a label-free workbench (no validation targets) measures agreement with the dense model
    blind = wb.Workbench(mlp.model, mlp.val.tensors[0])
    blind_run = wb.finetune(blind, plan, unlabelled, epochs=1, lr=3e-3, distill=0.5)
    assert blind_run.report.task == "classification-label-free"
    assert blind_run.report.metrics["agreement"] > blind.evaluate(plan).metrics["agreement"]
    assert any("distillation term alone" in note for note in blind_run.notes)


def test_distillation_loss_is_hintons(bench: wb.Workbench, plan: wb.PruningPlan) -> None:
    from workbench.recover.finetune import _loss

    torch.manual_seed(0)
    student, teacher = torch.randn(8, 10), torch.randn(8, 10)
    targets = torch.randint(0, 10, (8,))
    t, alpha = 3.0, 0.25
    p_teacher = torch.softmax(teacher / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / t, dim=1))).sum(1).mean()
    expected = (1 - alpha) * torch.nn.functional.cross_entropy(
        student, targets
    ) + alpha * t * t * kl
    got = _loss("classification", student, targets, teacher, alpha, t)
    torch.testing.assert_close(got, expected)


def test_cancel_keeps_the_best_model_so_far(
    bench: wb.Workbench, plan: wb.PruningPlan, mlp: wb.Demo
) -> None:
    stop = threading.Event()
    events = wb.finetune_iter(bench, plan, mlp.train, epochs=5, lr=3e-3, eval_every=2, stop=stop)
    seen = []
    for event in events:
        if event.finished:
            result = event.result
            break
        seen.append(event)
        if event.done == 7:
            stop.set()
    assert result.stopped == "cancelled"
    assert result.history["step"].iloc[-1] == 8  # stopped at the next batch
    evaluated = result.history.dropna(subset=["accuracy"])
    assert evaluated["accuracy"].iloc[0] == bench.evaluate(plan).metrics["accuracy"]  # step 0
    best = evaluated["accuracy"].max()
    assert result.report.metrics["accuracy"] == pytest.approx(best)
    assert result.best_step <= 8
    x = mlp.val.tensors[0]
    with torch.no_grad():
        independent = accuracy_score(mlp.val.tensors[1], result.model.eval()(x).argmax(1))
    assert result.report.metrics["accuracy"] == pytest.approx(independent)


def test_a_regressor_recovers() -> None:
    demo = wb.load_demo("diabetes-regressor")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.9, scope="global")
    run = wb.finetune(bench, plan, demo.train, epochs=10, lr=3e-3, distill=0.3)
    x, y = demo.val.tensors
    with torch.no_grad():
        predicted = run.model.eval()(x).reshape(-1)
    assert run.report.metrics["r2"] == pytest.approx(
        r2_score(y.numpy(), predicted.numpy()), abs=1e-5
    )
    assert run.report.metrics["r2"] > bench.evaluate(plan).metrics["r2"]


def test_channel_plans_hold_biases_and_batchnorm_entries() -> None:
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.5, granularity="channel")
    kept = bench.kept(plan)
    assert any(not name.endswith("weight") for name in kept)  # biases / norm entries
    run = wb.finetune(bench, plan, demo.train, epochs=1, lr=3e-3)
    for name, keep in kept.items():
        value = named_tensor(run.model, name)
        assert (value[~keep] == 0).all(), name
    # the compaction-relevant counts: the report's nonzero weights equal the plan's
    assert int(run.report.layers["nonzero"].sum()) <= int(
        bench.evaluate(plan).layers["nonzero"].sum()
    )


def test_training_on_the_validation_set_is_refused(
    bench: wb.Workbench, plan: wb.PruningPlan, mlp: wb.Demo
) -> None:
    with pytest.raises(wb.RecoverError, match="validation samples"):
        wb.finetune(bench, plan, mlp.val)
    train, val = wb.split_data(mlp.val, 0.5, seed=3)
    rows = {tuple(r.tolist()) for r in train.tensors[0]}
    assert not any(tuple(r.tolist()) in rows for r in val.tensors[0])
    assert len(train) + len(val) == len(mlp.val)
    again, _ = wb.split_data(mlp.val, 0.5, seed=3)
    assert torch.equal(again.tensors[0], train.tensors[0])
    split_bench = wb.Workbench(mlp.model, val)
    wb.finetune(split_bench, plan, train, epochs=1)  # disjoint: allowed


def test_settings_are_checked(bench: wb.Workbench, plan: wb.PruningPlan, mlp: wb.Demo) -> None:
    for bad in ({"epochs": 0}, {"lr": 0.0}, {"distill": 1.5}, {"temperature": 0.0}):
        with pytest.raises(wb.RecoverError):
            wb.finetune(bench, plan, mlp.train, **bad)


def test_history_columns(run: wb.Recovery) -> None:
    assert list(run.history.columns[:5]) == ["step", "epoch", "train_loss", "lr", "sparsity"]
    assert np.isfinite(run.history["train_loss"].iloc[1:]).all()
    assert run.history["sparsity"].iloc[-1] == pytest.approx(0.9, abs=1e-3)


def test_your_data_brings_its_training_split_fitted_like_validation(tmp_path) -> None:
    """A file's seeded split (or its own x_train) reaches recovery prepared exactly as the
    validation inputs are (the model's dtype), and the two parts are disjoint."""
    from tests.helpers import tabular_files
    from workbench import io as wio

    files = tabular_files(tmp_path)
    model = wio.load_model(files["model"])
    data = wio.load_data(files["data"], target="target", val_fraction=0.6, seed=1)
    built = wio.run_build(model, data)
    train_x, train_y = built.train
    assert train_x.dtype == built.bench.val_inputs.dtype == torch.float32  # CSV floats are f64
    assert len(train_x) + len(built.bench.val_inputs) == data.info.n_total
    val_rows = {tuple(r.tolist()) for r in built.bench.val_inputs}
    assert not any(tuple(r.tolist()) in val_rows for r in train_x)
    plan = wb.PruningPlan.uniform(built.bench.layer_names, 0.8)
    run = wb.finetune(built.bench, plan, (train_x, train_y), epochs=2, lr=3e-3)
    with torch.no_grad():
        predicted = run.model.eval()(built.bench.val_inputs).argmax(1)
    assert run.report.metrics["accuracy"] == pytest.approx(
        accuracy_score(built.bench.targets, predicted)
    )


def test_an_exported_program_trains_with_its_zeros_held(tmp_path, mlp: wb.Demo) -> None:
    """A .pt2 upload is a graph that reads its parameters directly: it trains, its zeros stay,
    and the result says it holds plain zeros instead of torch.nn.utils.prune masks."""
    from tests.helpers import export

    export(mlp.model, mlp.val.tensors[0][:2], tmp_path / "mlp.pt2")
    loaded = wb.load_model(tmp_path / "mlp.pt2")
    bench = wb.Workbench(loaded.model, mlp.val)
    plan = wb.PruningPlan.uniform(bench.layer_names, 0.9, scope="global")
    run = wb.finetune(bench, plan, mlp.train, epochs=2, lr=3e-3)
    for name, keep in run.masks.items():
        assert (named_tensor(run.model, name)[~keep] == 0).all()
    assert run.report.metrics["accuracy"] > bench.evaluate(plan).metrics["accuracy"] + 0.05
    assert any("without torch.nn.utils.prune masks" in note for note in run.notes)
