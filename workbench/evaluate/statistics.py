"""Data-dependent statistics of the dense model for the taylor and wanda criteria."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from workbench.evaluate.graph import GraphRunner
from workbench.pruning.layers import PrunableLayer
from workbench.pruning.plan import PlanError

Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


class DataStatistics:
    """Computed on first use, for all layers at once, on the dense model and the given batches."""

    def __init__(
        self,
        runner: GraphRunner,
        weights: dict[str, torch.Tensor],
        batches: Callable[[], Batches],
        task: str,
        output: Callable[[object], torch.Tensor],
    ) -> None:
        self._runner = runner
        self._weights = weights
        self._batches = batches
        self._task = task
        self._output = output
        self._taylor: dict[str, torch.Tensor] | None = None
        self._input_sq: dict[str, torch.Tensor] | None = None

    def taylor(self, layer: PrunableLayer) -> torch.Tensor:
        if self._taylor is None:
            self._taylor = self._compute_taylor()
        return self._taylor[layer.weight_name]

    def input_norm(self, layer: PrunableLayer) -> torch.Tensor:
        if self._input_sq is None:
            self._input_sq = self._compute_input_squares()
        if layer.weight_name not in self._input_sq:
            raise PlanError(
                f"the inputs of layer {layer.name!r} cannot be observed (it runs inside another "
                "module), so the wanda criterion cannot score it; choose another criterion"
            )
        norm = self._input_sq[layer.weight_name].sqrt()  # (in_channels,)
        return _broadcast_to_weight(norm, layer)

    def channel_attribution(self, layer: PrunableLayer, method: str) -> torch.Tensor:
        """Mean |attribution| of each output channel on the dense model, for all layers at once."""
        computed: dict[str, dict[str, torch.Tensor]] = vars(self).setdefault("_attribution", {})
        if method not in computed:
            if _CHANNEL_ATTRIBUTION is None:
                raise RuntimeError("no channel attribution is registered: import workbench")
            computed[method] = _CHANNEL_ATTRIBUTION(
                self._runner.model,
                self._runner.layers,
                torch.cat([inputs for inputs, _ in self._batches()]),
                method,
                classification=self._task == "classification",
                task=self._task,
            )
        if layer.name not in computed[method]:
            raise PlanError(
                f"layer {layer.name!r} cannot be hooked (it is not a regular module), so the "
                f"{method} criterion cannot score its channels; choose another criterion for it"
            )
        return computed[method][layer.name]

    def _compute_taylor(self) -> dict[str, torch.Tensor]:
        params = {
            name: weight.detach().clone().requires_grad_(True)
            for name, weight in self._weights.items()
        }
        taylor = TaylorSum(params)
        # The weights are (out, in) (`PrunableLayer.logical`); the model reads them as stored.
        layers = {layer.weight_name: layer for layer in self._runner.layers}
        with torch.enable_grad():
            for inputs, targets in self._batches():
                stored = {name: layers[name].stored(p) for name, p in params.items()}
                raw = self._runner.run({"input": inputs}, 0, self._runner.end, stored)
                loss = summed_loss(self._output(raw), targets, self._task)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                taylor.add(grads, int(targets.shape[0]))
        return taylor.scores()

    def _compute_input_squares(self) -> dict[str, torch.Tensor]:
        squares: dict[str, torch.Tensor] = {}

        def record(layer: PrunableLayer, inputs: torch.Tensor, _output: torch.Tensor) -> None:
            x = inputs.detach().double()
            if layer.kind == "Linear":
                per_feature = x.square().reshape(-1, x.shape[-1]).sum(dim=0)
            else:  # (N, C, *spatial): one norm per input channel
                per_feature = x.square().transpose(0, 1).reshape(x.shape[1], -1).sum(dim=1)
            previous = squares.get(layer.weight_name)
            squares[layer.weight_name] = per_feature if previous is None else previous + per_feature

        with torch.no_grad():
            for inputs, _ in self._batches():
                self._runner.run({"input": inputs}, 0, self._runner.end, {}, layer_hook=record)
        return {name: value.to(self._weights[name].dtype) for name, value in squares.items()}


def summed_loss(outputs: torch.Tensor, targets: torch.Tensor, task: str) -> torch.Tensor:
    """The task's loss summed over the batch (cross-entropy, squared error, or one minus the
    cosine to the dense embeddings)."""
    if task == "classification":
        return F.cross_entropy(outputs, targets, reduction="sum")
    if task == "embedding":
        return (1.0 - F.cosine_similarity(outputs.flatten(1), targets.flatten(1), dim=1)).sum()
    return F.mse_loss(outputs.reshape(targets.shape), targets, reduction="sum")


class TaylorSum:
    """The taylor statistic |w · ∂L/∂w|, with L the mean loss over the whole data set.

    Feed it the gradients of each batch's `summed_loss`; the gradient of the whole set's loss
    is accumulated signed (in float64) and the absolute value taken once, in `scores`, as
    Torch-Pruning's TaylorImportance does after accumulating `.grad`. The batch size is then
    only a speed setting: it changes the scores by float rounding alone. (Taking |·| per batch,
    or averaging per-minibatch squares as Molchanov et al. 2019 do, makes the scores depend on
    how the data is split.)
    """

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        self._weights = {name: weight.detach() for name, weight in weights.items()}
        self._sums = {
            name: torch.zeros_like(weight, dtype=torch.float64)
            for name, weight in self._weights.items()
        }
        self._count = 0

    def add(self, grads: Sequence[torch.Tensor | None], count: int) -> None:
        """One batch: the gradients of its summed loss (in the weights' order), its size."""
        for name, grad in zip(self._sums, grads, strict=True):
            if grad is not None:  # None: the weight does not reach the loss, its score is 0
                self._sums[name] += grad.double()
        self._count += count

    def scores(self) -> dict[str, torch.Tensor]:
        """{weight name: scores shaped and typed like the weight}."""
        count = max(self._count, 1)
        return {
            name: (weight.double() * self._sums[name] / count).abs().to(weight.dtype)
            for name, weight in self._weights.items()
        }


def _broadcast_to_weight(norm: torch.Tensor, layer: PrunableLayer) -> torch.Tensor:
    """Per-input-channel norms laid onto the weight: weight[o, i] reads channel g(o)·in/g + i."""
    out, in_per_group = layer.shape[0], layer.shape[1]
    if layer.groups == 1:
        per_weight = norm.expand(out, in_per_group)
    else:
        group = torch.arange(out, device=norm.device) // (out // layer.groups)
        channel = group[:, None] * in_per_group + torch.arange(in_per_group, device=norm.device)
        per_weight = norm[channel]
    return per_weight.reshape(out, in_per_group, *([1] * (len(layer.shape) - 2)))


# The attribution criteria rank channels with Captum, which lives above the engine
# (workbench.explain registers its function here when imported): no import points upward.
_CHANNEL_ATTRIBUTION: Callable[..., dict[str, torch.Tensor]] | None = None


def register_channel_attribution(function: Callable[..., dict[str, torch.Tensor]]) -> None:
    global _CHANNEL_ATTRIBUTION
    _CHANNEL_ATTRIBUTION = function
