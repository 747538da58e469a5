"""Prune, then quantize (Deep Compression's order): int8 weights of the compacted model.

torchao's `IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))` on every
Linear and Conv2d it quantizes on CPU: symmetric scales, one per output row of a Linear, one per
output channel and kernel position of a Conv2d (torchao groups a conv's input channels). Every
other tensor stays fp32: biases, BatchNorm, a conv with one input channel per group (torchao 0.18
cannot quantize those), a layer torchao refuses; `Quantized.fp32_layers` says which and why.
Weight-only: activations stay fp32, so CPU latency is the dequantizing kernel's, measured like
the other models, not assumed faster.

A torch.export program of the quantized model calls torchao's subclass accessors, which the
`.pt2` loader refuses from an untrusted file; the `safetensors-int8` export is therefore plain
tensors (each quantized weight's int8 values and fp32 scales, the rest fp32) with the plan in its
metadata, read back by `read_int8` onto the compacted model of that plan (no code in the file).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.evaluate import Workbench
from workbench.pruning.plan import PruningPlan
from workbench.ship.compact import compact

#: What the int8 export and the cards say the scheme is.
INT8_SCHEME = "torchao IntxWeightOnlyConfig(int8, PerAxis(0)), weights only"
#: Separator between a quantized weight's name and its inner tensors in a safetensors-int8 file.
INNER = "::"
_QUANTIZED = (nn.Linear, nn.Conv2d)


def int8_available() -> bool:
    """Whether torchao (in the `export` extra) is installed."""
    return importlib.util.find_spec("torchao") is not None


@dataclass
class Quantized:
    """The compacted model with int8 weights."""

    model: nn.Module
    int8_layers: tuple[str, ...]
    fp32_layers: dict[str, str] = field(default_factory=dict)  # layer: why it stays fp32

    def state(self) -> dict[str, torch.Tensor]:
        """Plain tensors: `<weight>::qdata` (int8), `<weight>::scale`, ... and the fp32 rest."""
        tensors: dict[str, torch.Tensor] = {}
        for key, value in self.model.state_dict().items():
            if _is_quantized(value):
                names, _ = value.__tensor_flatten__()
                for inner in names:
                    tensors[f"{key}{INNER}{inner}"] = getattr(value, inner).detach().contiguous()
            else:
                tensors[key] = value.detach().contiguous()
        return {k: v.cpu() for k, v in tensors.items()}

    def to_bytes(self, metadata: dict[str, str] | None = None) -> bytes:
        from safetensors.torch import save

        return save(self.state(), metadata=metadata)

    @property
    def bytes(self) -> int:
        """Measured: the length of the serialized tensors (safetensors, without metadata)."""
        return len(self.to_bytes())


def quantize(bench: Workbench, plan: PruningPlan, model: Any = None) -> Quantized:
    """The compacted model of `plan` (or of `model`, a trained copy) with int8 weights."""
    small = compact(bench, plan, model).model.cpu().eval()  # a fresh model: ours to change
    return _quantize_model(small)


def read_int8(path: str | Path | bytes, bench: Workbench) -> Quantized:
    """A `safetensors-int8` export back as a quantized model: the compacted model of the plan
    in its metadata, quantized alike, its int8 values and scales copied in from the file."""
    from safetensors.torch import load

    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    tensors = load(data)
    meta = _metadata(data)
    if "plan" not in meta:
        raise WorkbenchError("not a safetensors-int8 export: it has no plan in its metadata")
    quantized = quantize(bench, PruningPlan.from_json(meta["plan"]))
    state = quantized.model.state_dict()
    expected = set(quantized.state())
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise WorkbenchError(
            f"this int8 export does not fit the plan's compacted model (missing {missing[:3]}, "
            f"unexpected {extra[:3]})"
        )
    with torch.no_grad():
        for key, value in tensors.items():
            weight, _, inner = key.partition(INNER)
            target = getattr(state[weight], inner) if inner else state[weight]
            if target.shape != value.shape or target.dtype != value.dtype:
                raise WorkbenchError(
                    f"this int8 export does not fit the plan's compacted model: {key} is "
                    f"{value.dtype} {tuple(value.shape)} in the file, {target.dtype} "
                    f"{tuple(target.shape)} here"
                )
            target.copy_(value)
    return quantized


def int8_metadata(quantized: Quantized, plan: PruningPlan, metrics: dict) -> dict[str, str]:
    return {
        "plan": plan.to_json(indent=None),
        "metrics": json.dumps(metrics),
        "scheme": INT8_SCHEME,
        "int8_layers": json.dumps(list(quantized.int8_layers)),
        "fp32_layers": json.dumps(quantized.fp32_layers),
    }


# ---- helpers ---------------------------------------------------------------------------------


def _quantize_model(model: nn.Module) -> Quantized:
    quantize_, config = _torchao()
    int8, fp32 = [], {}
    for name, module in model.named_modules():
        if not isinstance(module, _QUANTIZED):
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter) and weight.dim() >= 2:  # Conv1d, Embedding, ...
                fp32[name] = f"a {type(module).__name__}: torchao's int8 here is Linear and Conv2d"
            continue
        if isinstance(module, nn.Conv2d) and module.in_channels == module.groups:
            # torchao 0.18 fails on these (its scales group a conv's input channels)
            fp32[name] = "one input channel per group (depthwise or single-channel input)"
            continue
        try:
            quantize_(module, config, filter_fn=lambda m, _: isinstance(m, _QUANTIZED))
        except (RuntimeError, ValueError, AssertionError, NotImplementedError) as error:
            # torchao's refusal of this layer's shape: the layer stays fp32, said as such
            fp32[name] = f"torchao: {str(error).splitlines()[0][:120]}"
            continue
        int8.append(name)
    if not int8:
        raise WorkbenchError("no layer of this model could be quantized to int8 by torchao")
    return Quantized(model, tuple(int8), fp32)


def _torchao() -> tuple[Any, Any]:
    if not int8_available():
        raise WorkbenchError(
            "int8 quantization needs torchao (the export extra: pip install -r "
            "requirements-export.txt -c constraints.txt)"
        )
    # torchao's import logs that its CUDA kernels do not load (true, and irrelevant on CPU) and
    # makes torch's pytree log a deprecation of torchao's own: neither is the user's to act on.
    quiet = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.ERROR)
    try:
        from torchao.quantization import IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerAxis
    finally:
        for log, level in zip(quiet, levels, strict=True):
            log.setLevel(level)

    return quantize_, IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))


def _is_quantized(value: torch.Tensor) -> bool:
    return type(value) not in (torch.Tensor, nn.Parameter) and hasattr(value, "__tensor_flatten__")


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of safetensors bytes (an 8-byte header length, then JSON)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}
