"""wb.compact and wb.latency: the compacted model equals the engine's evaluation of the plan."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench as wb
from workbench.models.synthetic import scale_workload


class Coupled(nn.Module):
    """A residual block with BatchNorm, a grouped and a depthwise conv, a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.side = nn.Conv2d(8, 4, 1)
        self.head = nn.Linear(12 * 4 * 4, 16)
        self.out = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        y = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bn2(self.conv2(y)))  # residual: conv2's channels reach an add
        g = torch.relu(self.depthwise(torch.relu(self.grouped(x))))
        x = torch.cat([g, self.side(x)], dim=1)
        x = nn.functional.max_pool2d(x, 2)
        x = x.view(x.size(0), -1)
        return self.out(torch.relu(self.head(x)))


def _bench(model: nn.Module, n: int = 64, shape=(3, 8, 8), classes: int = 5) -> wb.Workbench:
    torch.manual_seed(0)
    for module in model.modules():  # non-trivial running statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(n, *shape)
    return wb.Workbench(model.eval(), (x, torch.randint(0, classes, (n,))))


def _channel_plan(bench: wb.Workbench, level: float = 0.5) -> wb.PruningPlan:
    names = [n for n in bench.layer_names if n not in bench.output_layers]
    return wb.PruningPlan(sparsity=dict.fromkeys(names, level), granularity="channel")


def _assert_equal(bench: wb.Workbench, plan: wb.PruningPlan) -> wb.Compacted:
    small = wb.compact(bench, plan)
    with torch.no_grad():
        got = small.model(bench.val_inputs)
    want = bench.outputs(plan)
    assert got.shape == want.shape  # output layers keep their outputs
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    return small


def _kept_params(bench: wb.Workbench, plan: wb.PruningPlan) -> int:
    params = dict(bench.model.named_parameters())
    zeros = sum(int((~m).sum()) for n, m in bench.kept(plan).items() if n in params)
    return sum(p.numel() for p in params.values()) - zeros


@pytest.mark.parametrize("name", wb.list_demos())
def test_compacted_demo_equals_the_evaluation(name: str) -> None:
    demo = wb.load_demo(name)
    bench = wb.Workbench(demo.model, demo.val)
    plan = _channel_plan(bench)
    small = _assert_equal(bench, plan)
    assert (
        small.params == _kept_params(bench, plan) < sum(p.numel() for p in bench.model.parameters())
    )
    assert set(small.shapes.columns) >= {"tensor", "before", "after", "params_after"}
    assert small.shapes["params_after"].sum() == small.params


def test_scale_resnet_compacts_exactly() -> None:
    model, (x, y) = scale_workload()
    bench = wb.Workbench(model, (x[:64], y[:64]))
    plan = _channel_plan(bench)
    small = _assert_equal(bench, plan)
    assert small.params == _kept_params(bench, plan)
    assert small.flops(x[:1]) < bench.layers["flops"].sum()


def test_residual_grouped_concat_compacts_exactly() -> None:
    bench = _bench(Coupled())
    for level in (0.25, 0.5, 0.75):
        small = _assert_equal(bench, _channel_plan(bench, level))
        # the grouped convolution keeps its rows (a ChannelSelect picks the kept ones)
        assert any(isinstance(m, wb.ChannelSelect) for m in small.model.modules())
        assert any(isinstance(m, wb.ChannelScatter) for m in small.model.modules())
        assert small.params < sum(p.numel() for p in bench.model.parameters())


def test_unstructured_plans_keep_the_shapes() -> None:
    bench = _bench(Coupled())
    plan = wb.PruningPlan(sparsity={"conv1": 0.9}, granularity="unstructured")
    small = _assert_equal(bench, plan)
    assert (small.shapes["before"] == small.shapes["after"]).all()


def test_graph_programs_are_refused_with_the_reason(tmp_path) -> None:
    demo = wb.load_demo("digits-cnn")
    x = wb.Workbench(demo.model, demo.val).val_inputs[:4]
    scripted = torch.jit.trace(demo.model.eval(), x)
    batch = {0: torch.export.Dim("batch")}
    program = torch.export.export(demo.model.eval(), (x,), dynamic_shapes=(batch,)).module()
    for model, why in ((scripted, "TorchScript"), (program, "graph program")):
        bench = wb.Workbench(model, demo.val)
        with pytest.raises(
            wb.WorkbenchError, match=f"not available for this model, because.*{why}"
        ):
            wb.compact(bench, wb.PruningPlan(sparsity={}, granularity="channel"))


def test_latency_structure() -> None:
    bench = _bench(Coupled())
    plan = _channel_plan(bench)
    lat = wb.latency(wb.compact(bench, plan), bench.val_inputs[:1], threads=1, min_run_time=0.05)
    assert lat.batch == 1 and lat.threads == 1 and lat.runs >= 1
    assert lat.median_s > 0 and lat.iqr_s >= 0 and lat.per_sample_s == lat.median_s
    threads = torch.get_num_threads()
    table = wb.latency_table(
        {"dense": bench.model, "masked": bench.pruned_model(plan)},
        bench.val_inputs[:8],
        threads=1,
        min_run_time=0.05,
    )
    assert torch.get_num_threads() == threads  # restored
    assert list(table["label"]) == ["dense", "masked"] and table["speedup"].iloc[0] == 1.0
    assert (table["batch"] == 8).all()
    with pytest.raises(wb.WorkbenchError):
        wb.latency(bench.model, bench.val_inputs[:1], threads=0)


def test_plan_latency_rows() -> None:
    bench = _bench(Coupled())
    table = wb.plan_latency(bench, _channel_plan(bench), batch_size=4, threads=1, min_run_time=0.02)
    expected = ["dense", "masked", "compacted"]
    expected += ["compacted int8"] if wb.int8_available() else []
    expected += ["onnxruntime"] if wb.onnxruntime_available() else []
    assert list(table["label"]) == expected
    assert (table["batch"] == 4).all() and (table["median_s"] > 0).all()
    with pytest.raises(wb.WorkbenchError, match="batch size"):
        wb.plan_latency(bench, _channel_plan(bench), batch_size=0)


def test_a_layer_with_every_channel_removed_keeps_one_zero_channel() -> None:
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    small = _assert_equal(
        bench, wb.PruningPlan(sparsity={"features.0": 1.0}, granularity="channel")
    )
    assert small.shapes.set_index("tensor").loc["features.0.weight", "after"] == "1×1×3×3"


class TokenMLP(nn.Module):
    """Linear layers along the last dim of (N, T, C), residual adds and a LayerNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 8)
        self.ln = nn.LayerNorm(8)
        self.c, self.d = nn.Linear(8, 12), nn.Linear(12, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln(x + self.b(nn.functional.gelu(self.a(x))))
        x = x + self.d(torch.relu(self.c(x)))
        return self.head(x.mean(1))


def test_linear_layers_along_the_last_dim_compact_exactly() -> None:
    bench = _bench(TokenMLP(), shape=(5, 8), classes=3)
    small = _assert_equal(bench, _channel_plan(bench))
    shapes = small.shapes.set_index("tensor")["after"]
    assert shapes["a.weight"] == "8×8" and shapes["b.weight"] == "4×8"  # a's rows, b's columns
    assert shapes["ln.weight"] == "8"  # the residual stream keeps its width


def test_latency_leaves_grad_mode_as_it_was() -> None:
    # torch.utils.benchmark's template cut a `with torch.no_grad():` statement, leaving grad
    # mode off for the whole process afterwards (fine-tuning, Torch-Pruning's tracing).
    wb.latency(nn.Linear(4, 4), torch.randn(2, 4), min_run_time=0.01)
    assert torch.is_grad_enabled()
