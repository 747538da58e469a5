"""wb.export: every format round-trips (read back, same metrics)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import workbench as wb
from workbench.evaluate.metrics import compute_metrics

PLAN = wb.PruningPlan(
    sparsity={"features.0": 0.5, "features.2": 0.5, "classifier.1": 0.5}, granularity="channel"
)


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    return wb.Workbench(demo.model, demo.val)


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key


def _loaded(bench: wb.Workbench, path) -> wb.Workbench:
    """A workbench of the exported program, read through the io loader's checks."""
    return wb.Workbench(wb.load_model(path).model, (bench.val_inputs, bench.targets))


def _metrics(bench: wb.Workbench, back: wb.Workbench) -> dict:
    """The loaded program's metrics against the original dense model."""
    return compute_metrics(bench.task, back.dense_outputs, bench.targets, bench.dense_outputs)


def test_plan_json_and_yaml(bench, tmp_path) -> None:
    assert wb.PruningPlan.from_json(wb.export(bench, PLAN, tmp_path / "p.json").read_text()) == PLAN
    yaml = pytest.importorskip("yaml")
    text = wb.export(bench, PLAN, tmp_path / "p.yaml").read_text()
    assert wb.PruningPlan.from_dict(yaml.safe_load(text)) == PLAN


def test_safetensors_weights_masks_metadata(bench, tmp_path) -> None:
    path = wb.export(bench, PLAN, tmp_path / "m.safetensors")
    tensors = load_file(path)
    masks = {
        k[len(wb.MASK_PREFIX) :]: v for k, v in tensors.items() if k.startswith(wb.MASK_PREFIX)
    }
    assert masks.keys() == bench.kept(PLAN).keys()
    assert all(m.dtype == torch.bool for m in masks.values())
    model = wb.load_demo("digits-cnn").model
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(wb.MASK_PREFIX)})
    _close(bench.model_metrics(model), bench.evaluate(PLAN).metrics)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert wb.PruningPlan.from_json(meta["plan"]) == PLAN
    assert json.loads(meta["metrics"]) == pytest.approx(bench.evaluate(PLAN).metrics)
    assert "torch" in json.loads(meta["versions"])


def test_torch_prune_restores_with_custom_from_mask(bench, tmp_path) -> None:
    path = wb.export(bench, PLAN, tmp_path / "m.pt")
    state = torch.load(path, weights_only=True)
    assert "features.0.weight_orig" in state and "features.0.weight_mask" in state
    model = wb.restore_torch_prune(wb.load_demo("digits-cnn").model.eval(), state)
    assert hasattr(model.get_submodule("features.0"), "weight_mask")  # prune's hook form
    with torch.no_grad():
        got = model(bench.val_inputs)
    assert torch.allclose(got, bench.outputs(PLAN), atol=1e-6)


@pytest.mark.parametrize("plan", [PLAN, PLAN.replace(granularity="unstructured")])
def test_pt2_loads_back_with_the_same_metrics(bench, tmp_path, plan) -> None:
    path = wb.export(bench, plan, tmp_path / "m.pt2")
    back = _loaded(bench, path)
    _close(_metrics(bench, back), bench.evaluate(plan).metrics)
    if plan.granularity == "channel":  # the compacted program: fewer parameters
        assert back.dense_size["total_params"] < bench.dense_size["total_params"]


def test_model_card(bench, tmp_path) -> None:
    table = wb.latency_table(
        {"dense": bench.model}, bench.val_inputs[:1], threads=1, min_run_time=0.02
    )
    text = wb.export(bench, PLAN, tmp_path / "card.md", latency=table).read_text()
    assert text.startswith("# Model card")
    for part in (
        "## Metrics",
        "| accuracy |",
        "Compacted",
        "## Latency",
        '"granularity": "channel"',
        "torch",
    ):
        assert part in text
    assert ("Compacted int8" in text) == wb.int8_available()


def test_a_recovered_model_exports(bench, tmp_path) -> None:
    demo = wb.load_demo("digits-cnn")
    run = wb.finetune(bench, PLAN, demo.train, epochs=1, seed=0)
    path = wb.export(bench, PLAN, tmp_path / "r.pt2", model=run)
    _close(_metrics(bench, _loaded(bench, path)), bench.model_metrics(run.plain_model()))


def test_formats_and_errors(bench, tmp_path) -> None:
    assert {"plan", "safetensors", "torch-prune", "pt2", "card"} <= set(wb.export_formats())
    assert ("onnx" in wb.export_formats()) == wb.onnxruntime_available()
    with pytest.raises(wb.WorkbenchError, match="format"):
        wb.export(bench, PLAN, tmp_path / "m.bin")
    assert wb.export_bytes(bench, PLAN, "plan").decode().strip() == PLAN.to_json()


def test_onnx_matches_torch_where_the_extra_is_installed(bench, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from workbench.ship.export import onnx_runner

    path = wb.export(bench, PLAN, tmp_path / "m.onnx")
    got, want = onnx_runner(path, threads=1)(bench.val_inputs), bench.outputs(PLAN)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    table = wb.plan_latency(bench, PLAN, 2, threads=1, min_run_time=0.02)
    int8 = ["compacted int8"] if wb.int8_available() else []
    assert list(table["label"]) == ["dense", "masked", "compacted", *int8, "onnxruntime"]


def test_read_plan_reads_both_exports(bench, tmp_path) -> None:
    assert wb.read_plan(wb.export_bytes(bench, PLAN, "plan"), "p.json") == PLAN
    if "plan-yaml" in wb.export_formats():
        assert wb.read_plan(wb.export_bytes(bench, PLAN, "plan-yaml"), "p.yaml") == PLAN
        with pytest.raises(wb.PlanError):
            wb.read_plan("sparsity: [1, 2", "p.yml")
    with pytest.raises(wb.PlanError):
        wb.read_plan("{not json", "p.json")
