"""Paired bootstrap intervals of a drop: the dense and the pruned model scored on the same
resamples, checked against scikit-learn metrics and numpy percentiles by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, log_loss, r2_score

import workbench as wb
from workbench.analysis import drop_table, scan

LEVELS = (0.0, 0.3, 0.9)
B, SEED = 100, 5


def _resamples(n: int) -> np.ndarray:
    # The scan's documented draw: B rows of n indices, uniform with replacement, seeded.
    generator = torch.Generator().manual_seed(SEED)
    return torch.randint(n, (B, n), generator=generator).numpy()


def _by_hand(name: str, metric: str, score) -> tuple[wb.Workbench, dict, object]:
    demo = wb.load_demo(name)
    bench = wb.Workbench(demo.model, demo.val)
    frame = scan(bench, LEVELS, bootstrap=B, seed=SEED)
    targets = demo.val.tensors[1].numpy()
    dense = bench.dense_outputs.double().numpy()
    rows = _resamples(len(targets))
    dense_values = np.array([score(targets[r], dense[r]) for r in rows])
    return bench, {"frame": frame, "targets": targets, "rows": rows, "dense": dense_values}, score


def _accuracy(y, out):
    return accuracy_score(y, out.argmax(axis=1))


def _loss(y, out):
    probabilities = torch.softmax(torch.from_numpy(out), dim=1).numpy()
    return log_loss(y, probabilities, labels=list(range(out.shape[1])))


def _r2(y, out):
    return r2_score(y, out.reshape(y.shape))


@pytest.mark.parametrize(
    ("demo", "metric", "score", "higher"),
    [
        ("digits-mlp", "accuracy", _accuracy, True),
        ("digits-mlp", "loss", _loss, False),
        ("diabetes-regressor", "r2", _r2, True),
    ],
)
def test_drop_interval_is_the_paired_percentile_interval(demo, metric, score, higher) -> None:
    bench, case, _ = _by_hand(demo, metric, score)
    frame, targets, rows = case["frame"], case["targets"], case["rows"]
    sign = 1.0 if higher else -1.0
    table = drop_table(frame, metric)
    narrower = 0
    for i, row in enumerate(frame.to_dict("records")):
        plan = wb.PruningPlan({row["layer"]: row["level"]})
        outputs = bench.outputs(plan).double().numpy()
        pruned = np.array([score(targets[r], outputs[r]) for r in rows])
        drops = sign * (case["dense"] - pruned)
        low, high = np.percentile(drops, [2.5, 97.5])
        assert row[f"{metric}_drop_low"] == pytest.approx(low, rel=1e-9, abs=1e-9), row
        assert row[f"{metric}_drop_high"] == pytest.approx(high, rel=1e-9, abs=1e-9), row
        assert table.loc[i, "drop_low"] == row[f"{metric}_drop_low"]
        assert table.loc[i, "drop_high"] == row[f"{metric}_drop_high"]
        if row["level"] == 0.0:
            assert low == high == 0.0  # the dense model against itself
            continue
        if row["level"] == 0.3:
            # Mildly pruned, the model errs on nearly the same samples as dense: the unpaired
            # reading (dense point minus the pruned interval) is wider, the shared sampling
            # noise cancels in the paired difference.
            lo_p, hi_p = np.percentile(pruned, [2.5, 97.5])
            narrower += (high - low) < (hi_p - lo_p) - 1e-12
    assert narrower == len(bench.layer_names)


def test_a_scan_without_paired_columns_gets_no_drop_interval() -> None:
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val)
    frame = scan(bench, (0.0, 0.5), bootstrap=50)
    old = frame.drop(columns=[c for c in frame.columns if "_drop_" in c])
    assert "drop_low" in drop_table(frame).columns
    assert "drop_low" not in drop_table(old).columns
