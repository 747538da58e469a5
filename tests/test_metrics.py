"""Every metric of workbench.evaluate.metrics against scikit-learn's own implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

import workbench as wb
from workbench.evaluate.metrics import (
    HIGHER_IS_BETTER,
    METRIC_RANGE,
    PRIMARY_METRIC,
    classification_metrics,
    compute_metrics,
    confusion_matrix,
    infer_task,
    label_free_metrics,
    per_class_accuracy,
    regression_metrics,
)

REL = 1e-10  # both sides compute in float64; only the order of the sums differs


def _probabilities(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=1).numpy()


def _pruned(name: str, sparsity: float) -> tuple[wb.Workbench, torch.Tensor]:
    demo = wb.load_demo(name)
    bench = wb.Workbench(demo.model, demo.val)
    plan = wb.PruningPlan(dict.fromkeys(bench.layer_names, sparsity))
    return bench, bench.outputs(plan)


def _logit_case(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, targets, dense logits): a pruned demo, or seeded random logits."""
    if name == "digits-mlp":
        bench, outputs = _pruned("digits-mlp", 0.85)
        return outputs, bench.targets, bench.dense_outputs
    generator = torch.Generator().manual_seed(0)
    random = torch.randn(300, 7, generator=generator, dtype=torch.float64)
    dense = random + 0.8 * torch.randn(300, 7, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 7, (300,), generator=generator)
    if name == "random-2":  # fewer than five classes: no top-5
        return random[:, :2].contiguous(), labels % 2, dense[:, :2].contiguous()
    return random, labels, dense


@pytest.mark.parametrize("case", ["digits-mlp", "random-7", "random-2"])
def test_classification_metrics_equal_sklearn(case) -> None:
    logits, targets, dense = _logit_case(case)
    ours = classification_metrics(logits, targets, dense)
    y = targets.numpy()
    predicted = logits.argmax(dim=1).numpy()
    classes = list(range(logits.shape[1]))
    expected = {
        "accuracy": sk.accuracy_score(y, predicted),
        "loss": sk.log_loss(y, _probabilities(logits), labels=classes),
        "agreement": sk.accuracy_score(dense.argmax(dim=1).numpy(), predicted),
    }
    if logits.shape[1] >= 5:
        expected["top5_accuracy"] = sk.top_k_accuracy_score(
            y, logits.double().numpy(), k=5, labels=classes
        )
    assert set(ours) == set(expected)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=REL, abs=1e-12), name
    assert 0.0 < ours["agreement"] < 1.0  # a real comparison, not the model against itself
    assert compute_metrics("classification", logits, targets, dense) == ours


@pytest.mark.parametrize("sparsity", [0.0, 0.7])
def test_regression_metrics_equal_sklearn(sparsity) -> None:
    bench, outputs = _pruned("diabetes-regressor", sparsity)
    ours = regression_metrics(outputs, bench.targets, bench.dense_outputs)
    y = bench.targets.double().numpy()
    predicted = outputs.double().numpy().reshape(y.shape)
    dense = bench.dense_outputs.double().numpy().reshape(y.shape)
    expected = {
        "r2": sk.r2_score(y, predicted),
        "mse": sk.mean_squared_error(y, predicted),
        "mae": sk.mean_absolute_error(y, predicted),
        "loss": sk.mean_squared_error(y, predicted),
        "agreement_rmse": sk.root_mean_squared_error(dense, predicted),
    }
    assert set(ours) == set(expected)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=REL, abs=1e-12), name
    assert compute_metrics("regression", outputs, bench.targets, bench.dense_outputs) == ours


def test_r2_of_constant_targets_is_nan() -> None:
    # sklearn returns a finite stand-in (0 or 1, force_finite=True) or -inf; R² is undefined.
    outputs = torch.tensor([1.0, 2.0, 3.0])
    assert math.isnan(regression_metrics(outputs, torch.full((3,), 2.0), outputs)["r2"])


def test_label_free_metrics_use_the_dense_predictions_as_labels() -> None:
    logits, _, dense = _logit_case("random-7")
    ours = label_free_metrics("classification", logits, dense)
    reference = dense.argmax(dim=1).numpy()
    assert ours["agreement"] == pytest.approx(
        sk.accuracy_score(reference, logits.argmax(dim=1).numpy()), rel=REL
    )
    expected_loss = sk.log_loss(reference, _probabilities(logits), labels=list(range(7)))
    assert ours["loss"] == pytest.approx(expected_loss, rel=REL)
    assert compute_metrics("classification", logits, None, dense) == ours

    bench, outputs = _pruned("diabetes-regressor", 0.7)
    ours = label_free_metrics("regression", outputs, bench.dense_outputs)
    dense_values = bench.dense_outputs.double().numpy().reshape(-1)
    values = outputs.double().numpy().reshape(-1)
    assert ours["agreement_rmse"] == pytest.approx(
        sk.root_mean_squared_error(dense_values, values), rel=REL
    )
    assert ours["loss"] == pytest.approx(sk.mean_squared_error(dense_values, values), rel=REL)


def test_confusion_matrix_and_per_class_accuracy_equal_sklearn() -> None:
    generator = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 6, (500,), generator=generator)
    targets[targets == 4] = 0  # class 4 absent from the targets
    predictions = torch.randint(0, 6, (500,), generator=generator)
    ours = confusion_matrix(predictions, targets, 6)
    expected = sk.confusion_matrix(targets.numpy(), predictions.numpy(), labels=list(range(6)))
    np.testing.assert_array_equal(ours.numpy(), expected)
    recall = sk.recall_score(
        targets.numpy(),
        predictions.numpy(),
        labels=list(range(6)),
        average=None,
        zero_division=np.nan,
    )
    np.testing.assert_allclose(per_class_accuracy(ours).numpy(), recall, rtol=1e-15)
    assert math.isnan(per_class_accuracy(ours)[4].item())


def test_tables_of_metrics_are_consistent() -> None:
    assert infer_task(torch.tensor([0, 1])) == "classification"
    assert infer_task(torch.tensor([0.5, 1.0])) == "regression"
    assert set(HIGHER_IS_BETTER) == set(METRIC_RANGE)
    assert set(PRIMARY_METRIC.values()) <= set(HIGHER_IS_BETTER)
    for name, (low, high) in METRIC_RANGE.items():
        assert low < high, name


def test_the_registry_is_the_source_of_the_metric_tables() -> None:
    from workbench.evaluate.metrics import METRICS

    assert {n: m.higher_is_better for n, m in METRICS.items()} == HIGHER_IS_BETTER
    assert {n: m.range for n, m in METRICS.items()} == METRIC_RANGE
    # A percentage is a share: exactly the metrics that span [0, 1].
    for metric in METRICS.values():
        assert metric.is_percentage == (metric.range == (0.0, 1.0)), metric.name
