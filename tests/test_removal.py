"""A removed channel is removed: a channel plan evaluates as the smaller model it describes.

The oracle is that smaller model, built by hand: the kept filters of each convolution, the kept
entries of its BatchNorm, and the kept input columns of the layer after it. Its outputs equal the
engine's (to rounding: its matrices have other shapes), its parameters are the report's
non-zeros and its FLOPs (counted by FlopCounterMode) are the report's effective FLOPs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import workbench as wb


def _net(c1: int = 8, c2: int = 12, hidden: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, padding=1),
        nn.BatchNorm2d(c1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.BatchNorm2d(c2),
        nn.ReLU(),
        nn.MaxPool2d(2),  # (N, c2, 3, 3)
        nn.Flatten(),
        nn.Linear(c2 * 9, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 4),
    )


@pytest.fixture(scope="module")
def setup() -> tuple[nn.Module, wb.Workbench, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _net().eval()
    with torch.no_grad():
        for bn in (model[1], model[4]):  # shifts that would leak if a channel were only zeroed
            bn.running_mean.normal_(0.0, 0.5, generator=generator)
            bn.running_var.uniform_(0.5, 2.0, generator=generator)
            bn.weight.uniform_(0.5, 1.5, generator=generator)
            bn.bias.normal_(0.0, 0.5, generator=generator)
    x = torch.randn(64, 3, 6, 6, generator=generator)
    y = torch.randint(0, 4, (64,), generator=generator)
    return model, wb.Workbench(model, (x, y), batch_size=32), x


def _compact(model: nn.Sequential, kept: dict[int, torch.Tensor]) -> nn.Sequential:
    """The model with only the kept output channels of layers 0, 3 and 8 (by position)."""
    k0, k3, k8 = kept[0], kept[3], kept[8]
    small = _net(int(k0.sum()), int(k3.sum()), int(k8.sum())).eval()
    with torch.no_grad():
        small[0].weight.copy_(model[0].weight[k0])
        small[0].bias.copy_(model[0].bias[k0])
        for i, k in ((1, k0), (4, k3)):
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(small[i], name).copy_(getattr(model[i], name)[k])
        small[3].weight.copy_(model[3].weight[k3][:, k0])
        small[3].bias.copy_(model[3].bias[k3])
        columns = k3.repeat_interleave(9)  # each channel is 3×3 flattened inputs
        small[8].weight.copy_(model[8].weight[k8][:, columns])
        small[8].bias.copy_(model[8].bias[k8])
        small[10].weight.copy_(model[10].weight[:, k8])
        small[10].bias.copy_(model[10].bias)
    return small


def _flops(model: nn.Module, sample: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(sample)
    return counter.get_total_flops()


@pytest.mark.parametrize(
    ("sparsity", "scope"),
    [
        ({"0": 0.5}, "layer"),
        ({"3": 0.25}, "layer"),
        ({"8": 0.6}, "layer"),
        ({"0": 0.25, "3": 0.5, "8": 0.3}, "layer"),
        ({"0": 0.75, "3": 0.75, "8": 0.5}, "layer"),
        # Ranked together (a cut that leaves every layer a channel: the small model needs one).
        ({"3": 0.3, "8": 0.3}, "global"),
    ],
)
def test_a_channel_plan_evaluates_as_the_smaller_model(
    setup: tuple[nn.Module, wb.Workbench, torch.Tensor], sparsity: dict, scope: str
) -> None:
    model, bench, x = setup
    plan = wb.PruningPlan(sparsity=sparsity, granularity="channel", scope=scope)
    masks = bench.masks(plan)
    kept = {
        i: masks[str(i)].reshape(masks[str(i)].shape[0], -1).any(dim=1)
        if str(i) in masks
        else torch.ones(model[i].weight.shape[0], dtype=torch.bool)
        for i in (0, 3, 8)
    }
    small = _compact(model, kept)
    with torch.no_grad():
        expected = torch.cat([small(b) for b in x.split(32)])
    outputs = bench.outputs(plan)
    tol = 64 * torch.finfo(outputs.dtype).eps * outputs.abs().max().item()
    torch.testing.assert_close(outputs, expected, rtol=0, atol=tol)

    report = bench.evaluate(plan)
    nonzero = sum(int(torch.count_nonzero(p)) for p in small.parameters())
    assert report.size["nonzero_params"] == nonzero
    assert report.size["flops_effective"] == _flops(small, x[:1])
    # The table says which input columns went with an earlier layer's channels.
    table = report.layers.set_index("name")
    assert table.loc["3", "removed_inputs"] == int((~kept[0]).sum())
    assert table.loc["8", "removed_inputs"] == 9 * int((~kept[3]).sum())
    assert table.loc["10", "removed_inputs"] == int((~kept[8]).sum())
    # The pruned model the engine hands out is that removal too: the same outputs.
    pruned = bench.pruned_model(plan).eval()
    with torch.no_grad():
        assert torch.equal(torch.cat([pruned(b) for b in x.split(32)]), outputs)


def test_the_removal_found_in_the_graph(setup: tuple[nn.Module, wb.Workbench, torch.Tensor]) -> None:
    _, bench, _ = setup
    assert bench.channel_removal("0").zeroed == ("0.bias", "1.weight", "1.bias", "1.running_mean")
    assert bench.channel_removal("0").consumers == (("3", 1),)
    assert bench.channel_removal("3").consumers == (("8", 9),)
    assert bench.channel_removal("8").consumers == (("10", 1),)
    assert bench.output_layers == {"10"}
    assert list(bench.layers["channel_prunable"]) == [True, True, True, False]


def test_unstructured_plans_remove_no_columns_and_keep_biases(
    setup: tuple[nn.Module, wb.Workbench, torch.Tensor],
) -> None:
    model, bench, _ = setup
    plan = wb.PruningPlan(sparsity={"0": 1.0})  # every weight of the layer, but not a removal
    pruned = bench.pruned_model(plan)
    assert torch.equal(pruned[0].bias, model[0].bias)
    assert torch.equal(pruned[1].bias, model[1].bias)
    assert (bench.evaluate(plan).layers["removed_inputs"] == 0).all()
