"""Task metrics computed from a model's outputs on the whole validation set."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Task = Literal["classification", "regression"]

#: The headline metric of each task: what the app shows first and what budgets protect.
PRIMARY_METRIC: dict[str, str] = {"classification": "accuracy", "regression": "r2"}
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


def compute_metrics(
    task: Task, outputs: torch.Tensor, targets: torch.Tensor, dense_outputs: torch.Tensor
) -> dict[str, float]:
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
