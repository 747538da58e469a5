"""One size accounting: the budget solver's figures of a plan equal the engine's report."""

from __future__ import annotations

import pytest

import workbench as wb
from workbench.analysis import footprint

PLANS = [
    ({"features.0": 0.5}, "unstructured", "layer"),
    ({"features.0": 0.3, "features.2": 0.7, "classifier.1": 0.9}, "unstructured", "layer"),
    ({"features.0": 0.6, "features.2": 0.6, "classifier.1": 0.6}, "unstructured", "global"),
    ({"features.0": 0.5}, "channel", "layer"),
    ({"features.0": 0.25, "features.2": 0.5}, "channel", "layer"),
    ({"features.0": 0.5, "features.2": 0.5, "classifier.1": 0.5}, "channel", "global"),
]


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val)


@pytest.mark.parametrize(("sparsity", "granularity", "scope"), PLANS)
def test_footprint_equals_the_report_size(bench, sparsity, granularity, scope) -> None:
    plan = wb.PruningPlan(
        {n: v for n, v in sparsity.items() if n in bench.layer_names},
        granularity=granularity,
        scope=scope,
    )
    report = bench.evaluate(plan)
    reached = footprint(bench, plan)
    assert reached["params"] == report.size["nonzero_params"]
    assert reached["bytes"] == report.size["sparse_bytes"]
    assert reached["flops"] == report.size["flops_effective"]
    layers = report.layers
    zeros = (layers["params"] - layers["nonzero"]).sum() / layers["params"].sum()
    assert reached["sparsity"] == pytest.approx(zeros, abs=1e-12)


def test_channel_proposals_footprints_equal_their_reports(bench) -> None:
    scan = bench.sensitivity(granularity="channel", levels=(0.0, 0.25, 0.5, 0.75))
    for p in wb.analysis.solve_budget(bench, scan, target=0.3):
        assert p.footprint["params"] == p.report.size["nonzero_params"], p.name
        assert p.footprint["bytes"] == p.report.size["sparse_bytes"], p.name
        assert p.footprint["flops"] == p.report.size["flops_effective"], p.name
