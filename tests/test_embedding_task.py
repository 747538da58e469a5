"""The embedding task (issue 15 #3): metrics of vector outputs against scikit-learn oracles, and
label-free mode choosing it for a model that declares embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.neighbors import NearestCentroid, NearestNeighbors
from sklearn.preprocessing import normalize
from torch import nn

import workbench as wb
from workbench.evaluate.metrics import (
    METRICS,
    NEIGHBOURS,
    PRIMARY_METRIC,
    compute_metrics,
    metric_terms,
    reduce_terms,
)


def _vectors(n: int = 60, dim: int = 12, classes: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=generator) * 2
    dense = centres[labels] + torch.randn(n, dim, generator=generator)
    pruned = dense + 0.8 * torch.randn(n, dim, generator=generator)
    return pruned, dense, labels


def test_metrics_equal_sklearn() -> None:
    pruned, dense, labels = _vectors()
    metrics = compute_metrics("embedding", pruned, labels, dense)
    p, d, y = pruned.double().numpy(), dense.double().numpy(), labels.numpy()

    cosines = np.diag(cosine_similarity(p, d))
    assert metrics["cosine"] == pytest.approx(cosines.mean(), rel=1e-12)
    assert metrics["cosine_p5"] == pytest.approx(np.percentile(cosines, 5), rel=1e-12)
    assert metrics["loss"] == pytest.approx((1 - cosines).mean(), rel=1e-12)

    def neighbours(x: np.ndarray) -> list[set[int]]:
        found = NearestNeighbors(n_neighbors=NEIGHBOURS + 1, metric="cosine").fit(x)
        rows = found.kneighbors(x, return_distance=False)
        return [set(row) - {i} for i, row in enumerate(rows)]

    kept = [len(a & b) / NEIGHBOURS for a, b in zip(neighbours(p), neighbours(d), strict=True)]
    assert metrics["neighbour_agreement"] == pytest.approx(np.mean(kept), rel=1e-12)
    assert 0 < metrics["neighbour_agreement"] < 1

    # Nearest centroid of the dense embeddings (L2-normalised), each sample left out of its own.
    pn, dn = normalize(p), normalize(d)
    correct = []
    for i in range(len(y)):
        others = np.arange(len(y)) != i
        probe = NearestCentroid().fit(dn[others], y[others])
        correct.append(probe.predict(pn[i : i + 1])[0] == y[i])
    assert metrics["centroid_accuracy"] == pytest.approx(np.mean(correct), rel=1e-12)


def test_dense_against_itself_and_bootstrap_rows() -> None:
    _, dense, labels = _vectors(seed=1)
    same = compute_metrics("embedding", dense, None, dense)
    assert same["cosine"] == pytest.approx(1.0) and same["cosine_p5"] == pytest.approx(1.0)
    assert same["neighbour_agreement"] == 1.0 and "centroid_accuracy" not in same
    pruned, dense, labels = _vectors(seed=2)
    terms = metric_terms("embedding", pruned, labels, dense)
    rows = torch.randint(0, len(dense), (5, len(dense)), generator=torch.Generator().manual_seed(0))
    boot = reduce_terms("embedding", terms, rows)
    for b in range(5):
        cos = terms["cosine"][rows[b]].numpy()
        assert boot["cosine_p5"][b].item() == pytest.approx(np.percentile(cos, 5), rel=1e-12)
        assert boot["centroid_accuracy"][b] == terms["centroid"][rows[b]].mean()
    for name in ("cosine", "cosine_p5", "neighbour_agreement", "centroid_accuracy"):
        assert METRICS[name].higher_is_better
    assert PRIMARY_METRIC["embedding"] == "centroid_accuracy"
    assert PRIMARY_METRIC["embedding-label-free"] == "cosine"


class _Encoder(nn.Module):
    """Declares its outputs to be embeddings, as a sentence encoder's wrapper does."""

    workbench_task = "embedding"

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_label_free_mode_picks_the_embedding_task() -> None:
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(3))
    bench = wb.Workbench(_Encoder(), (x, None))
    assert bench.task == "embedding"
    report = bench.evaluate(wb.PruningPlan(sparsity={"body.2": 0.6}))
    assert report.task == "embedding-label-free"
    assert set(report.metrics) == {"cosine", "cosine_p5", "loss", "neighbour_agreement"}
    with torch.no_grad():
        expected = compute_metrics(
            "embedding", bench.outputs(report.plan), None, bench.dense_outputs
        )
    assert report.metrics == expected
    assert report.metrics["cosine"] < 1.0 and report.confusion is None

    labels = torch.arange(40) % 3  # labels: the nearest-centroid accuracy, not a classifier's
    labelled = wb.Workbench(_Encoder(), (x, labels))
    assert labelled.task == "embedding"
    assert "centroid_accuracy" in labelled.evaluate(report.plan).metrics
    # taylor's loss is to the dense embeddings (labels are not targets of a vector)
    wb.Workbench(_Encoder(), (x, labels)).evaluate(
        wb.PruningPlan(sparsity={"body.0": 0.5}, method="taylor")
    )
