"""Task metrics computed from a model's outputs on the whole validation set."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Task = Literal["classification", "regression", "embedding"]

#: Neighbours each embedding's top-k retrieval compares (fewer in a smaller validation set).
NEIGHBOURS = 10


@dataclass(frozen=True)
class Metric:
    """What the app knows about a metric: how to name it, which way is better, what it spans."""

    name: str
    label: str
    higher_is_better: bool
    is_percentage: bool  # a share in [0, 1], shown as a percentage (its drops in points)
    range: tuple[float, float]


#: Every metric a report can carry, by name: the one place to add a metric's facts.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "Accuracy", True, True, (0.0, 1.0)),
        Metric("top5_accuracy", "Top-5 accuracy", True, True, (0.0, 1.0)),
        Metric("loss", "Loss", False, False, (0.0, math.inf)),
        Metric("agreement", "Agreement with dense", True, True, (0.0, 1.0)),
        Metric("mse", "MSE", False, False, (0.0, math.inf)),
        Metric("mae", "MAE", False, False, (0.0, math.inf)),
        Metric("r2", "R²", True, False, (-math.inf, 1.0)),
        Metric("agreement_rmse", "RMS diff. to dense", False, False, (0.0, math.inf)),
        # The embedding task (models whose outputs are vectors): see `embedding_terms`.
        Metric("cosine", "Cosine to dense (mean)", True, False, (-1.0, 1.0)),
        Metric("cosine_p5", "Cosine to dense (5th pct.)", True, False, (-1.0, 1.0)),
        Metric("neighbour_agreement", f"Top-{NEIGHBOURS} neighbours kept", True, True, (0.0, 1.0)),
        Metric("centroid_accuracy", "Nearest-centroid accuracy", True, True, (0.0, 1.0)),
    )
}

#: The headline metric of each task: what the app shows first and what budgets protect.
#: Without targets ("label-free", see `label_free_task`) the pruned model is compared with the
#: dense model only.
PRIMARY_METRIC: dict[str, str] = {
    "classification": "accuracy",
    "regression": "r2",
    "classification-label-free": "agreement",
    "regression-label-free": "agreement_rmse",
    "embedding": "centroid_accuracy",
    "embedding-label-free": "cosine",
}
# Derived views of METRICS, kept for the callers that read them by these names.
#: Whether a larger value of a metric is better.
HIGHER_IS_BETTER: dict[str, bool] = {n: m.higher_is_better for n, m in METRICS.items()}
#: The values each metric can take: shares in [0, 1], errors >= 0, R² at most 1.
METRIC_RANGE: dict[str, tuple[float, float]] = {n: m.range for n, m in METRICS.items()}


def clamp_metric(metric: str, value: float) -> float:
    """`value` clipped to the range the metric can take (an estimate such as a summed drop can
    leave it: four layers' drops of 50 points do not make an accuracy of -100 %)."""
    low, high = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    return min(max(value, low), high)


def label_free_task(task: str) -> str:
    """The name a report gives its task when the data has no targets."""
    return f"{task}-label-free"


def declared_task(model: object) -> Task | None:
    """The task a model says it has (`workbench_task`, e.g. a sentence encoder's "embedding"):
    outputs alone cannot tell an embedding from logits."""
    task = getattr(model, "workbench_task", None)
    return task if task in ("classification", "regression", "embedding") else None


def infer_task(targets: torch.Tensor) -> Task:
    """Classification when targets are integer class labels, regression otherwise."""
    if targets.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        return "classification"
    return "regression"


def metric_terms(
    task: Task,
    outputs: torch.Tensor,
    targets: torch.Tensor | None,
    dense_outputs: torch.Tensor,
    reference: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-sample float64 terms that every metric reduces: {term: (n,)}.

    Classification terms are the metrics' own (correct, agreeing, cross-entropy); regression's
    are the squared and absolute errors, the targets (for R²'s spread) and the squared
    difference to the dense model; the embedding task's are in `embedding_terms`. Without
    targets, the dense model's predictions stand in for them, as for the taylor criterion.
    `reference`: those predictions (`dense_predictions`) when the caller keeps them.
    """
    if task == "embedding":
        return embedding_terms(outputs, targets, dense_outputs)
    if task == "classification":
        if reference is None:
            reference = dense_predictions(dense_outputs)
        return classification_terms(outputs, targets, reference)
    values = outputs.double().reshape(-1)
    terms = {"dense_squared": (values - dense_outputs.double().reshape(-1)).square()}
    if targets is not None:
        truth = targets.double().reshape(-1)
        error = values - truth
        terms.update(squared=error.square(), absolute=error.abs(), truth=truth)
    return terms


def embedding_terms(
    outputs: torch.Tensor, labels: torch.Tensor | None, dense_outputs: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample terms of vector outputs (N, D) against the dense model's: the cosine of each
    embedding to its dense one; the share of its NEIGHBOURS nearest validation samples (cosine,
    itself left out) that stay its nearest; with labels, whether the nearest class centroid of
    the dense embeddings (L2-normalised, euclidean as sklearn's NearestCentroid, the sample's
    own dense embedding left out of its class's centroid) is its class: a fixed downstream
    classifier built on the dense model, applied to the pruned embeddings."""
    pruned = F.normalize(outputs.double().flatten(1), dim=1)
    dense = F.normalize(dense_outputs.double().flatten(1), dim=1)
    terms = {"cosine": (pruned * dense).sum(dim=1)}
    n = len(dense)
    k = min(NEIGHBOURS, n - 1)
    if k > 0:
        kept = (_neighbours(pruned, k) & _neighbours(dense, k)).sum(dim=1)
        terms["neighbours"] = kept.double() / k
    if labels is not None and n > 1:
        terms["centroid"] = _centroid_correct(pruned, dense, labels.long())
    return terms


def _neighbours(x: torch.Tensor, k: int) -> torch.Tensor:
    """(n, n) bool: row i marks the k rows of `x` most cosine-similar to row i, i excluded."""
    similarity = x @ x.T
    similarity.fill_diagonal_(-math.inf)
    nearest = similarity.topk(k, dim=1).indices
    return torch.zeros_like(similarity, dtype=torch.bool).scatter_(1, nearest, True)


def _centroid_correct(
    pruned: torch.Tensor, dense: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    classes = int(labels.max()) + 1
    sums = torch.zeros(classes, dense.shape[1], dtype=dense.dtype).index_add_(0, labels, dense)
    counts = torch.bincount(labels, minlength=classes).to(dense.dtype)
    centroids = (sums / counts.clamp(min=1)[:, None]).expand(len(dense), -1, -1).clone()
    own = counts[labels] - 1  # the sample's own class without it
    rows = torch.arange(len(dense))
    centroids[rows, labels] = (sums[labels] - dense) / own.clamp(min=1)[:, None]
    distance = (pruned[:, None, :] - centroids).square().sum(dim=2)  # (n, classes)
    empty = (counts[None, :] - F.one_hot(labels, classes).to(dense.dtype)) == 0
    distance[empty] = math.inf  # a class with no other sample has no centroid
    return (distance.argmin(dim=1) == labels).double()


def classification_terms(
    logits: torch.Tensor, targets: torch.Tensor | None, reference: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-sample float64 terms of (n, classes) logits: whether the prediction (argmax) is the
    target ("accuracy") and is the dense model's prediction `reference` ("agreement"), the
    cross-entropy to the target ("loss"), and with five classes or more whether the target is
    among `topk(5)`'s indices ("top5_accuracy"). Without targets, the loss is to `reference`.

    The definitions are `_plain_classification_terms`. This computes them from row counts,
    because PyTorch reduces short rows (a few classes) an element at a time on the CPU: in a
    slider step on 2,000 samples of 10 classes, argmax, cross-entropy and topk took longer than
    the model's last layer. Comparisons are read from the signs of differences in the logits'
    own dtype (exact: a difference of two floats is zero only when they are equal), row sums
    are products with a vector of ones (exact small integers), and the loss is the log-sum-exp
    shifted by the row maximum in float64. Rows whose answer depends on how ties are broken
    (a maximum that is not unique, a tie across the fifth place) take the plain definitions,
    as does any batch with a non-finite logit.
    """
    labels = reference if targets is None else targets
    k = 5 if targets is not None and logits.shape[1] >= 5 else 0
    if not torch.isfinite(logits.sum()):  # a non-finite logit (or an overflowing sum)
        return _plain_classification_terms(logits, targets, reference, k)
    if not logits.is_floating_point() or logits.element_size() < 4:
        logits = logits.double()  # counts below stay exact integers for any number of classes
    ones = torch.ones(logits.shape[1], dtype=logits.dtype, device=logits.device)
    top = logits.amax(dim=1, keepdim=True)
    below = (logits - top).sign_()  # -1 below the row's maximum, 0 at it
    unique = (below @ ones) == 1 - logits.shape[1]  # one maximal logit: argmax has no choice
    own = logits.gather(1, labels[:, None])
    top64 = top.double()
    loss = ((logits.double() - top64).exp_() @ ones.double()).log_() - (own.double() - top64)[:, 0]
    at_reference = own if targets is None else logits.gather(1, reference[:, None])
    terms = _ordered(
        None if targets is None else (own == top)[:, 0].double(),
        loss,
        (at_reference == top)[:, 0].double(),
    )
    decided = unique
    if k:
        sign = (logits - own).sign_()  # against the target's logit: 1 above, 0 equal, -1 below
        balance, nonzero = sign @ ones, sign.abs_() @ ones
        above = (balance + nonzero) / 2
        not_below = logits.shape[1] - (nonzero - balance) / 2
        inside = not_below <= k  # every logit not below the target's fits in the top k
        outside = above >= k  # k larger ones push the target out
        terms["top5_accuracy"] = inside.double()
        decided = decided & (inside | outside)
    tied = (~decided).nonzero().squeeze(1)
    if tied.numel():
        plain = _plain_classification_terms(
            logits[tied], None if targets is None else targets[tied], reference[tied], k
        )
        for name, term in plain.items():
            if name != "loss":  # the loss has no ties to break
                terms[name][tied] = term
    return terms


def _plain_classification_terms(
    logits: torch.Tensor, targets: torch.Tensor | None, reference: torch.Tensor, k: int
) -> dict[str, torch.Tensor]:
    """`classification_terms` by their definitions (argmax, F.cross_entropy, topk)."""
    logits = logits.double()
    predictions = logits.argmax(dim=1)
    labels = reference if targets is None else targets
    terms = _ordered(
        None if targets is None else (predictions == targets).double(),
        F.cross_entropy(logits, labels, reduction="none"),
        (predictions == reference).double(),
    )
    if k:
        top = logits.topk(k, dim=1).indices
        terms["top5_accuracy"] = (top == targets[:, None]).any(dim=1).double()
    return terms


def _ordered(
    accuracy: torch.Tensor | None, loss: torch.Tensor, agreement: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The classification terms in their reports' order; label-free sets have no accuracy and
    put the agreement first."""
    if accuracy is None:
        return {"agreement": agreement, "loss": loss}
    return {"accuracy": accuracy, "loss": loss, "agreement": agreement}


def dense_predictions(dense_outputs: torch.Tensor) -> torch.Tensor:
    """The dense model's predicted classes, as `metric_terms` compares with them."""
    return dense_outputs.double().argmax(dim=1)


def percentile_interval(samples: torch.Tensor, confidence: float) -> tuple[float, float]:
    """The percentile interval of bootstrap values (numpy's default interpolation)."""
    alpha = (1.0 - confidence) / 2
    quantiles = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)
    low, high = torch.quantile(samples.double().cpu(), quantiles).tolist()
    return low, high


def reduce_terms(
    task: Task, terms: dict[str, torch.Tensor], rows: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The metrics of `metric_terms` over the whole set (0-d values) or over each row of
    `rows`, a (B, n) long tensor of sample indices (a bootstrap: (B,) values)."""

    def mean(term: torch.Tensor) -> torch.Tensor:
        return term.mean() if rows is None else term[rows].mean(dim=1)

    if task == "embedding":
        cosine = terms["cosine"] if rows is None else terms["cosine"][rows]
        out = {
            "cosine": cosine.mean(dim=-1),
            # numpy's default percentile (linear interpolation), as torch.quantile computes it
            "cosine_p5": torch.quantile(cosine, 0.05, dim=-1),
            "loss": (1.0 - cosine).mean(dim=-1),
        }
        if "neighbours" in terms:
            out["neighbour_agreement"] = mean(terms["neighbours"])
        if "centroid" in terms:
            out["centroid_accuracy"] = mean(terms["centroid"])
        return out
    if task == "classification":
        return {name: mean(term) for name, term in terms.items()}
    difference = mean(terms["dense_squared"])
    if "squared" not in terms:  # label-free: the dense outputs are the targets
        rms = difference.sqrt()
        if rows is None:
            # Reports have always taken Python's `mse ** 0.5` here, a last bit off sqrt.
            rms = torch.tensor(difference.item() ** 0.5, dtype=torch.float64)
        return {"agreement_rmse": rms, "loss": difference}
    rms = difference.sqrt()
    squared = terms["squared"] if rows is None else terms["squared"][rows]
    truth = terms["truth"] if rows is None else terms["truth"][rows]
    spread = (truth - truth.mean(dim=-1, keepdim=True)).square().sum(dim=-1)
    r2 = 1.0 - squared.sum(dim=-1) / spread
    mse = squared.mean(dim=-1)
    return {
        "r2": torch.where(spread > 0, r2, torch.full_like(r2, math.nan)),
        "mse": mse,
        "mae": mean(terms["absolute"]),
        "loss": mse,
        "agreement_rmse": rms,
    }


def classification_metrics(
    logits: torch.Tensor, targets: torch.Tensor, dense_logits: torch.Tensor
) -> dict[str, float]:
    """Accuracy, top-5 accuracy (with at least five classes), cross-entropy and agreement."""
    return compute_metrics("classification", logits, targets, dense_logits)


def regression_metrics(
    outputs: torch.Tensor, targets: torch.Tensor, dense_outputs: torch.Tensor
) -> dict[str, float]:
    """MSE (also the loss), MAE, R² and the RMS difference to the dense model's outputs."""
    return compute_metrics("regression", outputs, targets, dense_outputs)


def label_free_metrics(
    task: Task, outputs: torch.Tensor, dense_outputs: torch.Tensor
) -> dict[str, float]:
    """Agreement with the dense model, and the loss against the dense model's predictions.

    With no targets, the dense model's predictions stand in for them: `loss` is the task's loss
    against those (cross-entropy to its argmax, or MSE to its outputs), the same pseudo-labels
    the taylor criterion uses.
    """
    return compute_metrics(task, outputs, None, dense_outputs)


def compute_metrics(
    task: Task,
    outputs: torch.Tensor,
    targets: torch.Tensor | None,
    dense_outputs: torch.Tensor,
    reference: torch.Tensor | None = None,
) -> dict[str, float]:
    """Every metric of the task on the whole set, reduced from `metric_terms`."""
    terms = metric_terms(task, outputs, targets, dense_outputs, reference)
    return {name: value.item() for name, value in reduce_terms(task, terms).items()}


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
