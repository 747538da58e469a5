"""The taylor criterion's statistic: |w · ∂L/∂w| with L the mean loss over the whole data set,
checked against float64 autograd on a deep copy, and independent of the batch size."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb

# float32 forward/backward passes of different batch shapes round differently; the sums over
# a few hundred samples stay within a few dozen ulps of the largest score (measured: <= 41).
TOLERANCE = 256 * torch.finfo(torch.float32).eps


def _oracle(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """|w · ∂L/∂w| in float64, the whole set in one batch, plain autograd on a copy."""
    model = copy.deepcopy(model).double().eval()
    out = model(x.double())
    if y.dtype.is_floating_point:
        loss = F.mse_loss(out.reshape(y.shape), y.double())
    else:
        loss = F.cross_entropy(out, y.long())
    layers = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    }
    grads = torch.autograd.grad(loss, [m.weight for m in layers.values()])
    return {
        n: (m.weight * g).abs().detach() for (n, m), g in zip(layers.items(), grads, strict=True)
    }


def _close(scores: torch.Tensor, expected: torch.Tensor) -> None:
    scale = expected.abs().max().item()
    torch.testing.assert_close(scores.double(), expected, rtol=0, atol=TOLERANCE * scale)


@pytest.mark.parametrize("demo", ["digits-mlp", "digits-cnn", "diabetes-regressor"])
def test_taylor_is_the_whole_set_gradient_whatever_the_batch_size(demo: str) -> None:
    data = wb.load_demo(demo)
    x, y = data.val.tensors
    expected = _oracle(data.model, x, y)
    by_size = {}
    for batch_size in (1, 7, 64, 512):
        bench = wb.Workbench(data.model, data.val, batch_size=batch_size)
        by_size[batch_size] = {n: bench.unit_scores(n, "taylor") for n in bench.layer_names}
        for layer in bench.prunable_layers:
            scores = bench.statistics.taylor(layer)
            assert scores.shape == layer.shape and scores.dtype == torch.float32
            _close(scores, expected[layer.name])
    for scores in by_size.values():
        for name, value in scores.items():
            _close(value, by_size[512][name].double())


def test_label_free_taylor_uses_the_dense_predictions() -> None:
    data = wb.load_demo("digits-mlp")
    x, _ = data.val.tensors
    with torch.no_grad():
        pseudo = data.model(x).argmax(dim=1)
    expected = _oracle(data.model, x, pseudo)
    for batch_size in (5, 512):
        bench = wb.Workbench(data.model, x, batch_size=batch_size)
        for layer in bench.prunable_layers:
            _close(bench.statistics.taylor(layer), expected[layer.name])
