"""Ties at the cut: masks equal torch.nn.utils.prune's, whichever tied weight torch.topk picks.

The weights are small multiples of 1/8, so many weights tie exactly, and channels are
permutations of a few rows, so their norms tie exactly too (sums of such numbers are exact in
any order).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import workbench as wb

AMOUNTS = (0.1, 0.2, 0.25, 0.3, 1 / 3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9)


class TiedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 12, 3, padding=1)
        self.fc1 = nn.Linear(12 * 4 * 4, 20)
        self.fc2 = nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 2, 4, 4)
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


def _tied(shape: tuple[int, ...], distinct_rows: int, generator: torch.Generator) -> torch.Tensor:
    """Rows drawn from a few base rows, each one shuffled: equal multisets, so equal norms."""
    per_row = int(torch.tensor(shape[1:]).prod())
    base = torch.randint(-4, 5, (distinct_rows, per_row), generator=generator).float() / 8
    rows = []
    for _ in range(shape[0]):
        row = base[int(torch.randint(0, distinct_rows, (), generator=generator))]
        rows.append(row[torch.randperm(per_row, generator=generator)])
    return torch.stack(rows).reshape(shape)


@pytest.fixture(scope="module")
def tied() -> tuple[nn.Module, wb.Workbench]:
    generator = torch.Generator().manual_seed(0)
    model = TiedNet().eval()
    with torch.no_grad():
        for module, rows in ((model.conv, 3), (model.fc1, 4), (model.fc2, 2)):
            module.weight.copy_(_tied(tuple(module.weight.shape), rows, generator))
    x = torch.randn(40, 2, 4, 4, generator=generator)
    y = torch.randint(0, 3, (40,), generator=generator)
    return model, wb.Workbench(model, (x, y), batch_size=16)


def _mask(module: nn.Module, apply) -> torch.Tensor:  # noqa: ANN001
    return apply(copy.deepcopy(module)).weight_mask.bool()


def test_the_weights_really_tie(tied: tuple[nn.Module, wb.Workbench]) -> None:
    model, _ = tied
    for module in (model.conv, model.fc1):
        norms = module.weight.abs().flatten(1).sum(dim=1)
        assert len(set(norms.tolist())) < len(norms) // 2
        assert len(set(module.weight.abs().flatten().tolist())) <= 5


@pytest.mark.parametrize("layer", ["conv", "fc1", "fc2"])
def test_unstructured_ties_fall_as_in_l1_unstructured(
    tied: tuple[nn.Module, wb.Workbench], layer: str
) -> None:
    model, bench = tied
    module = model.get_submodule(layer)
    for amount in AMOUNTS:
        mask = bench.masks(wb.PruningPlan(sparsity={layer: amount}))[layer]
        expected = _mask(module, lambda m, a=amount: prune.l1_unstructured(m, "weight", a))
        assert torch.equal(mask, expected), amount
        # l2 ranks single weights by magnitude too: the same cut.
        mask = bench.masks(wb.PruningPlan(sparsity={layer: amount}, method="l2"))[layer]
        assert torch.equal(mask, expected), amount


@pytest.mark.parametrize("layer", ["conv", "fc1"])
def test_random_criterion_cuts_as_l1_unstructured_on_its_scores(
    tied: tuple[nn.Module, wb.Workbench], layer: str
) -> None:
    model, bench = tied
    module = model.get_submodule(layer)
    scores = bench.unit_scores(layer, "random", seed=3).reshape(module.weight.shape)
    for amount in AMOUNTS:
        plan = wb.PruningPlan(sparsity={layer: amount}, method="random", seed=3)
        expected = _mask(
            module,
            lambda m, a=amount: prune.l1_unstructured(m, "weight", a, importance_scores=scores),
        )
        assert torch.equal(bench.masks(plan)[layer], expected), amount


@pytest.mark.parametrize("layer", ["conv", "fc1"])
@pytest.mark.parametrize("norm", [1, 2])
def test_channel_ties_fall_as_in_ln_structured(
    tied: tuple[nn.Module, wb.Workbench], layer: str, norm: int
) -> None:
    model, bench = tied
    module = model.get_submodule(layer)
    for amount in AMOUNTS:
        plan = wb.PruningPlan(sparsity={layer: amount}, method=f"l{norm}", granularity="channel")
        expected = _mask(
            module, lambda m, a=amount: prune.ln_structured(m, "weight", a, n=norm, dim=0)
        )
        assert torch.equal(bench.masks(plan)[layer], expected), amount


def test_global_ties_fall_as_in_global_unstructured(
    tied: tuple[nn.Module, wb.Workbench],
) -> None:
    model, bench = tied
    layers = ["conv", "fc1", "fc2"]
    for amount in AMOUNTS:
        copied = copy.deepcopy(model)
        prune.global_unstructured(
            [(copied.get_submodule(n), "weight") for n in layers],
            pruning_method=prune.L1Unstructured,
            amount=amount,
        )
        masks = bench.masks(wb.PruningPlan.uniform(layers, amount, scope="global"))
        for n in layers:
            assert torch.equal(masks[n], copied.get_submodule(n).weight_mask.bool()), (n, amount)
        # The same cut again, after other plans: cached orders give the same answer.
        again = bench.masks(wb.PruningPlan.uniform(layers, amount, scope="global"))
        assert all(torch.equal(again[n], masks[n]) for n in layers)


def test_engine_outputs_equal_the_torch_pruned_copy_at_a_tie(
    tied: tuple[nn.Module, wb.Workbench],
) -> None:
    model, bench = tied
    plan = wb.PruningPlan(sparsity={"conv": 0.5, "fc1": 0.5})
    copied = copy.deepcopy(model)
    prune.l1_unstructured(copied.conv, "weight", 0.5)
    prune.l1_unstructured(copied.fc1, "weight", 0.5)
    with torch.no_grad():
        expected = torch.cat([copied(b) for b in bench.val_inputs.split(16)])
    assert torch.equal(bench.outputs(plan), expected)
