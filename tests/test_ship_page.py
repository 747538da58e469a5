"""The Prune page's Ship section (AppTest): compacted size cards, measured latency, downloads."""

from __future__ import annotations

import pytest
import torch

import workbench as wb
from tests.test_app import metric, open_page, open_section
from ui.widgets import fmt_bytes

CHANNEL = {"sp": "features.0:0.5,features.2:0.5", "gran": "channel"}


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val)


def test_channel_plans_show_the_compacted_model(bench) -> None:
    at = open_page("pages/prune.py", query=CHANNEL)
    plan = wb.PruningPlan(sparsity={"features.0": 0.5, "features.2": 0.5}, granularity="channel")
    small = wb.compact(bench, plan)
    assert metric(at, "Compacted params") == f"{small.params:,}"
    assert any(m.label == "Compacted FLOPs / sample" for m in at.metric)
    if wb.int8_available():  # the int8 card is the measured model's serialized bytes
        assert metric(at, "Compacted int8 (measured)") == fmt_bytes(wb.quantize(bench, plan).bytes)
    with torch.no_grad():
        assert small.flops(bench.val_inputs[:1]) < bench.evaluate(plan).dense_size["flops_dense"]


def test_unstructured_plans_have_no_compacted_cards() -> None:
    at = open_page("pages/prune.py", query={"sp": "features.0:0.5"})
    assert not any(m.label.startswith("Compacted") for m in at.metric)


def test_latency_is_measured_on_demand() -> None:
    at = open_page("pages/prune.py", query=CHANNEL)
    assert not any(m.label == "compacted" for m in at.metric)  # nothing timed until asked
    assert not any(b.label == "Measure latency" for b in at.button)  # drawn once open
    open_section(at, "ship-open")
    next(b for b in at.button if b.label == "Measure latency").click().run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.label for m in at.metric]
    assert {"dense", "masked", "compacted"} <= set(labels)
    assert ("compacted int8" in labels) == wb.int8_available()
    assert metric(at, "dense").endswith(" ms")
