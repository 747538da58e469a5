"""wb.quantize: int8 weights of the compacted model (torchao), its metrics, sizes and export."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load, save
from torch import nn

import workbench as wb
from tests.test_ship import Coupled, _bench, _channel_plan
from tests.test_ship_export import PLAN  # features.0, features.2, classifier.1 at 50 %
from workbench.evaluate.metrics import compute_metrics
from workbench.ship.quantize import _metadata, _quantize_model

pytest.importorskip("torchao")


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val)


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _int8_budget(fp32: torch.Tensor, layers: int) -> float:
    """Half an int8 step of the fp32 outputs' range (max |y| / 127) for each int8 layer."""
    return layers * 0.5 * float(fp32.abs().max()) / 127


def test_one_linear_layer_within_its_rounding_bound() -> None:
    # Per-row symmetric int8: each weight is off by at most half its row's scale, so each
    # output is off by at most scale_i / 2 * sum |x| (and float rounding).
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Linear(64, 16)).eval()
    x = torch.randn(32, 64)
    want = _outputs(layer, x)
    quantized = _quantize_model(layer)
    scale = quantized.model[0].weight.scale.reshape(1, -1)
    bound = scale / 2 * x.abs().sum(dim=1, keepdim=True)
    assert ((_outputs(quantized.model, x) - want).abs() <= bound * (1 + 1e-4) + 1e-6).all()


def test_layers_quantized_and_those_left_fp32_are_said(bench) -> None:
    quantized = wb.quantize(bench, PLAN)
    small = wb.compact(bench, PLAN).model
    weighted = [n for n, m in small.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    assert sorted([*quantized.int8_layers, *quantized.fp32_layers]) == sorted(weighted)
    for name in quantized.int8_layers:
        assert quantized.state()[f"{name}.weight::qdata"].dtype == torch.int8
    assert list(quantized.fp32_layers) == ["features.0"]  # one input channel: said why
    assert "one input channel" in quantized.fp32_layers["features.0"]


def test_other_weighted_layers_are_said_to_stay_fp32() -> None:
    demo = wb.load_demo("mnist1d-cnn")  # Conv1d layers: torchao's int8 covers 2-d and 4-d
    bench = wb.Workbench(demo.model, demo.val)
    quantized = wb.quantize(bench, _channel_plan(bench))
    convs = [n for n, m in bench.model.named_modules() if isinstance(m, nn.Conv1d)]
    assert convs and set(convs) <= set(quantized.fp32_layers)
    assert all("Conv1d" in quantized.fp32_layers[n] for n in convs)


@pytest.mark.parametrize("make", ["digits", "coupled"])
def test_metrics_equal_an_independent_evaluation_and_outputs_are_close(bench, make) -> None:
    if make == "coupled":  # residual add, BatchNorm, grouped and depthwise convs, a concat
        bench = _bench(Coupled())
    plan = PLAN if make == "digits" else _channel_plan(bench)
    quantized = wb.quantize(bench, plan)
    got = _outputs(quantized.model, bench.val_inputs)
    fresh = compute_metrics(bench.task, got, bench.targets, bench.dense_outputs)
    assert bench.model_metrics(quantized.model) == pytest.approx(fresh, rel=1e-6, abs=1e-9)
    fp32 = bench.outputs(plan)
    error = float((got - fp32).abs().max())
    assert 0 < error <= _int8_budget(fp32, len(quantized.int8_layers))  # int8: not bit-exact


def test_sizes_are_measured(bench) -> None:
    quantized, small = wb.quantize(bench, PLAN), wb.compact(bench, PLAN)
    assert quantized.bytes == len(save(quantized.state()))
    assert quantized.bytes < small.dense_bytes
    state = quantized.state()
    int8 = sum(t.numel() for k, t in state.items() if k.endswith("::qdata"))
    weights = sum(small.model.get_submodule(n).weight.numel() for n in quantized.int8_layers)
    assert int8 == weights  # one byte per weight of every int8 layer (and its row scales)


def test_safetensors_int8_export_round_trips(bench, tmp_path) -> None:
    assert "safetensors-int8" in wb.export_formats()
    path = wb.export(bench, PLAN, tmp_path / "m.int8.safetensors")
    quantized = wb.quantize(bench, PLAN)
    assert load(path.read_bytes()).keys() == quantized.state().keys()
    back = wb.read_int8(path, bench)
    assert torch.equal(
        _outputs(back.model, bench.val_inputs), _outputs(quantized.model, bench.val_inputs)
    )
    meta = _metadata(path.read_bytes())
    assert wb.PruningPlan.from_json(meta["plan"]) == PLAN
    assert json.loads(meta["metrics"]) == pytest.approx(bench.model_metrics(back.model))
    assert json.loads(meta["int8_layers"]) == list(back.int8_layers)


def test_a_recovered_model_exports_its_own_weights(bench, tmp_path) -> None:
    run = wb.finetune(bench, PLAN, wb.load_demo("digits-cnn").train, epochs=1, seed=0)
    data = wb.export_bytes(bench, PLAN, "safetensors-int8", model=run)
    back, want = wb.read_int8(data, bench), wb.quantize(bench, PLAN, run)
    x = bench.val_inputs
    assert torch.equal(_outputs(back.model, x), _outputs(want.model, x))


def test_a_file_of_another_plan_is_refused(bench, tmp_path) -> None:
    data = wb.export_bytes(bench, PLAN, "safetensors-int8")
    other = PLAN.replace(sparsity={"features.0": 0.25, "features.2": 0.5, "classifier.1": 0.5})
    tensors, meta = load(data), _metadata(data)
    forged = save(tensors, metadata={**meta, "plan": other.to_json(indent=None)})
    with pytest.raises(wb.WorkbenchError, match="does not fit"):
        wb.read_int8(forged, bench)
    with pytest.raises(wb.WorkbenchError, match="no plan"):
        wb.read_int8(save(tensors), bench)
