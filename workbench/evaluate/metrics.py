"""Task metrics computed from a model's outputs on the whole validation set."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

Task = Literal["classification", "regression"]

#: The headline metric of each task: what the app shows first and what budgets protect.
#: Without targets ("label-free", see `label_free_task`) the pruned model is compared with the
#: dense model only.
PRIMARY_METRIC: dict[str, str] = {
    "classification": "accuracy",
    "regression": "r2",
    "classification-label-free": "agreement",
    "regression-label-free": "agreement_rmse",
}
#: Whether a larger value of a metric is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "top5_accuracy": True,
    "loss": False,
    "agreement": True,
    "mse": False,
    "mae": False,
    "r2": True,
    "agreement_rmse": False,
}
#: The values each metric can take: shares in [0, 1], errors >= 0, R² at most 1.
METRIC_RANGE: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "top5_accuracy": (0.0, 1.0),
    "agreement": (0.0, 1.0),
    "loss": (0.0, math.inf),
    "mse": (0.0, math.inf),
    "mae": (0.0, math.inf),
    "r2": (-math.inf, 1.0),
    "agreement_rmse": (0.0, math.inf),
}


def clamp_metric(metric: str, value: float) -> float:
    """`value` clipped to the range the metric can take (an estimate such as a summed drop can
    leave it: four layers' drops of 50 points do not make an accuracy of -100 %)."""
    low, high = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    return min(max(value, low), high)


def label_free_task(task: str) -> str:
    """The name a report gives its task when the data has no targets."""
    return f"{task}-label-free"


def infer_task(targets: torch.Tensor) -> Task:
    """Classification when targets are integer class labels, regression otherwise."""
    if targets.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        return "classification"
    return "regression"


def classification_metrics(
    logits: torch.Tensor, targets: torch.Tensor, dense_logits: torch.Tensor
) -> dict[str, float]:
    """Accuracy, top-5 accuracy (with at least five classes), cross-entropy and agreement."""
    logits, dense_logits = logits.double(), dense_logits.double()
    predictions = logits.argmax(dim=1)
    metrics = {
        "accuracy": (predictions == targets).double().mean().item(),
        "loss": F.cross_entropy(logits, targets).item(),
        # Share of samples where the pruned model predicts what the dense model predicts.
        "agreement": (predictions == dense_logits.argmax(dim=1)).double().mean().item(),
    }
    if logits.shape[1] >= 5:
        top5 = logits.topk(5, dim=1).indices
        metrics["top5_accuracy"] = (top5 == targets[:, None]).any(dim=1).double().mean().item()
    return metrics


def regression_metrics(
    outputs: torch.Tensor, targets: torch.Tensor, dense_outputs: torch.Tensor
) -> dict[str, float]:
    """MSE (also the loss), MAE, R² and the RMS difference to the dense model's outputs."""
    outputs = outputs.double().reshape(targets.shape)
    dense_outputs = dense_outputs.double().reshape(targets.shape)
    targets = targets.double()
    error = outputs - targets
    mse = error.square().mean().item()
    total = (targets - targets.mean()).square().sum().item()
    return {
        "r2": 1.0 - error.square().sum().item() / total if total > 0 else float("nan"),
        "mse": mse,
        "mae": error.abs().mean().item(),
        "loss": mse,
        "agreement_rmse": (outputs - dense_outputs).square().mean().sqrt().item(),
    }


def label_free_metrics(
    task: Task, outputs: torch.Tensor, dense_outputs: torch.Tensor
) -> dict[str, float]:
    """Agreement with the dense model, and the loss against the dense model's predictions.

    With no targets, the dense model's predictions stand in for them: `loss` is the task's loss
    against those (cross-entropy to its argmax, or MSE to its outputs), the same pseudo-labels
    the taylor criterion uses.
    """
    if task == "classification":
        logits, dense_logits = outputs.double(), dense_outputs.double()
        reference = dense_logits.argmax(dim=1)
        return {
            "agreement": (logits.argmax(dim=1) == reference).double().mean().item(),
            "loss": F.cross_entropy(logits, reference).item(),
        }
    difference = outputs.double().reshape(-1) - dense_outputs.double().reshape(-1)
    mse = difference.square().mean().item()
    return {"agreement_rmse": mse**0.5, "loss": mse}


def compute_metrics(
    task: Task, outputs: torch.Tensor, targets: torch.Tensor | None, dense_outputs: torch.Tensor
) -> dict[str, float]:
    if targets is None:
        return label_free_metrics(task, outputs, dense_outputs)
    if task == "classification":
        return classification_metrics(outputs, targets, dense_outputs)
    return regression_metrics(outputs, targets, dense_outputs)


def confusion_matrix(
    predictions: torch.Tensor, targets: torch.Tensor, n_classes: int
) -> torch.Tensor:
    """Counts indexed [true class, predicted class]."""
    flat = targets.long() * n_classes + predictions.long()
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class; NaN for classes absent from the targets."""
    support = confusion.sum(dim=1).double()
    return confusion.diagonal().double() / support
