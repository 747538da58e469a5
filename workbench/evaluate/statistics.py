"""Data-dependent statistics of the dense model for the taylor and wanda criteria."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from workbench.evaluate.graph import GraphRunner
from workbench.pruning.layers import PrunableLayer

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
            raise ValueError(
                f"the inputs of layer {layer.name!r} cannot be observed (it runs inside another "
                "module), so the wanda criterion cannot score it; choose another criterion"
            )
        norm = self._input_sq[layer.weight_name].sqrt()  # (in_channels,)
        return _broadcast_to_weight(norm, layer)

    def channel_attribution(self, layer: PrunableLayer, method: str) -> torch.Tensor:
        """Mean |attribution| of each output channel on the dense model, for all layers at once."""
        computed: dict[str, dict[str, torch.Tensor]] = vars(self).setdefault("_attribution", {})
        if method not in computed:
            # Imported here: workbench.explain brings in Captum, which only these criteria need.
            from workbench.explain.importance import criterion_attribution

            computed[method] = criterion_attribution(
                self._runner.model,
                self._runner.layers,
                torch.cat([inputs for inputs, _ in self._batches()]),
                method,
                classification=self._task == "classification",
            )
        if layer.name not in computed[method]:
            raise ValueError(
                f"layer {layer.name!r} cannot be hooked (it is not a regular module), so the "
                f"{method} criterion cannot score its channels; choose another criterion for it"
            )
        return computed[method][layer.name]

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self._task == "classification":
            return F.cross_entropy(outputs, targets, reduction="sum")
        return F.mse_loss(outputs.reshape(targets.shape), targets, reduction="sum")

    def _compute_taylor(self) -> dict[str, torch.Tensor]:
        """|w · ∂L/∂w| with L the mean loss over the whole data set.

        The gradient of the whole set's loss is accumulated (signed, in float64) over the
        batches and the absolute value taken once at the end, as Torch-Pruning's
        TaylorImportance does after accumulating `.grad`: the batch size is then only a speed
        setting and changes the scores by float rounding alone. (Taking |·| per batch, or the
        per-minibatch squares Molchanov et al. 2019 average, would make the scores depend on
        how the data is split.)
        """
        params = {
            name: weight.detach().clone().requires_grad_(True)
            for name, weight in self._weights.items()
        }
        sums = {
            name: torch.zeros_like(weight, dtype=torch.float64) for name, weight in params.items()
        }
        count = 0
        with torch.enable_grad():
            for inputs, targets in self._batches():
                raw = self._runner.run({"input": inputs}, 0, self._runner.end, params)
                loss = self._loss(self._output(raw), targets)
                grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
                for name, grad in zip(params, grads, strict=True):
                    if grad is not None:
                        sums[name] += grad.double()
                count += int(targets.shape[0])
        return {
            name: (weight.detach().double() * sums[name] / max(count, 1)).abs().to(weight.dtype)
            for name, weight in params.items()
        }

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
