"""Exports of a plan's model: the plan, weights with masks, torch.nn.utils.prune form, a
torch.export program, ONNX (optional extra), and a Markdown model card.

`export(bench, plan, path)` writes one; `model=` exports a trained copy of the pruned model
(a `Recovery` or its `plain_model()`) instead of the engine's pruned model.
"""

from __future__ import annotations

import json
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune

from workbench.errors import WorkbenchError
from workbench.evaluate import Report, Workbench
from workbench.evaluate.modelling import as_output_tensor
from workbench.pruning.plan import PlanError, PruningPlan
from workbench.ship.compact import compact, plain
from workbench.ship.latency import onnxruntime_available
from workbench.ship.quantize import INT8_SCHEME, int8_available, int8_metadata, quantize

#: Format name: (file suffix, what a download button says).
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "plan": (".json", "Plan JSON"),
    "plan-yaml": (".yaml", "Plan YAML"),
    "safetensors": (".safetensors", "safetensors"),
    "safetensors-int8": (".int8.safetensors", "int8 safetensors"),
    "torch-prune": (".pt", "torch-prune"),
    "pt2": (".pt2", "pt2 program"),
    "onnx": (".onnx", "ONNX"),
    "card": (".md", "Model card"),
}
#: Prefix of the boolean masks among a safetensors export's tensors.
MASK_PREFIX = "mask/"
#: Relative tolerance an ONNX Runtime session must meet against torch before it is written.
ONNX_RTOL = 1e-5


def export_formats() -> list[str]:
    """The formats this installation can write (onnx and safetensors-int8 need the `export`
    extra; YAML pyyaml)."""
    formats = [f for f in EXPORT_FORMATS if f != "onnx" or onnxruntime_available()]
    formats = [f for f in formats if f != "safetensors-int8" or int8_available()]
    return formats if _yaml() is not None else [f for f in formats if f != "plan-yaml"]


def export(
    bench: Workbench,
    plan: PruningPlan,
    path: str | Path,
    format: str | None = None,
    *,
    model: Any = None,
    latency: pd.DataFrame | None = None,
) -> Path:
    """Write the plan's model (or `model`, a trained copy of it) as `format` (by default from
    the suffix of `path`); returns the path. `latency` (a `latency_table`) goes on the card."""
    path = Path(path)
    format = format or _format_of(path)
    if format not in export_formats():
        raise WorkbenchError(
            f"cannot export as {format!r}: the formats here are {', '.join(export_formats())}"
            + ("" if onnxruntime_available() else " (onnx needs the export extra)")
            + ("" if int8_available() else " (safetensors-int8 needs torchao: the export extra)")
        )
    model = plain(model) if model is not None else None
    _WRITERS[format](bench, plan, path, model, latency)
    return path


def export_bytes(bench: Workbench, plan: PruningPlan, format: str, **options: Any) -> bytes:
    """The bytes `export` writes, for a download button."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"model{EXPORT_FORMATS[format][0]}"
        return export(bench, plan, path, format, **options).read_bytes()


def read_plan(text: str | bytes, name: str = "plan.json") -> PruningPlan:
    """A plan exported as `plan` (JSON) or `plan-yaml` (by the file name's suffix)."""
    text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    if not name.lower().endswith((".yaml", ".yml")):
        return PruningPlan.from_json(text)
    if _yaml() is None:
        raise PlanError("reading a YAML plan needs pyyaml (pip install pyyaml), or use the JSON")
    try:
        data = _yaml().safe_load(text)
    except _yaml().YAMLError as error:
        raise PlanError(f"not a YAML plan: {str(error).splitlines()[0]}") from None
    return PruningPlan.from_dict(data)


def report_of(bench: Workbench, plan: PruningPlan, model: nn.Module | None) -> Report:
    return bench.evaluate(plan) if model is None else bench.evaluate_model(model, plan)


def restore_torch_prune(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load a `torch-prune` export into `model` (the original architecture): every
    `<name>_mask` becomes a `prune.custom_from_mask`, then the state dict loads strictly."""
    for key, mask in state.items():
        if key.endswith("_mask"):
            owner, _, name = key[: -len("_mask")].rpartition(".")
            prune.custom_from_mask(model.get_submodule(owner), name, mask)
    model.load_state_dict(state)
    return model


def onnx_runner(path: Path, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """An ONNX Runtime session of an exported file (CPU, `threads` like torch's by default),
    as a function of a tensor."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.cpu().numpy()})[0])


def versions() -> dict[str, str]:
    import safetensors

    return {
        "prune-workbench": _own_version(),
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


# ---- writers ---------------------------------------------------------------------------------


def _plan(bench: Workbench, plan: PruningPlan, path: Path, *_: Any) -> None:
    path.write_text(plan.to_json() + "\n")


def _plan_yaml(bench: Workbench, plan: PruningPlan, path: Path, *_: Any) -> None:
    path.write_text(_yaml().safe_dump(plan.to_dict(), sort_keys=False))


def _safetensors(
    bench: Workbench, plan: PruningPlan, path: Path, model: nn.Module | None, _: Any
) -> None:
    from safetensors.torch import save_file

    pruned = model if model is not None else bench.pruned_model(plan)
    tensors = {k: v.detach().contiguous().cpu() for k, v in pruned.state_dict().items()}
    tensors.update({MASK_PREFIX + k: m.cpu().contiguous() for k, m in bench.kept(plan).items()})
    report = report_of(bench, plan, model)
    metadata = {
        "plan": plan.to_json(indent=None),
        "metrics": json.dumps(report.to_dict()["metrics"]),
        "versions": json.dumps(versions()),
    }
    save_file(tensors, str(path), metadata=metadata)


def _safetensors_int8(
    bench: Workbench, plan: PruningPlan, path: Path, model: nn.Module | None, _: Any
) -> None:
    # A .pt2 of the quantized model calls torchao's accessors, which the loader refuses: plain
    # int8 values and scales instead, read back onto the plan's compacted model by read_int8.
    quantized = quantize(bench, plan, model)
    metrics = bench.model_metrics(quantized.model)
    path.write_bytes(quantized.to_bytes(int8_metadata(quantized, plan, metrics)))


def _torch_prune(
    bench: Workbench, plan: PruningPlan, path: Path, model: nn.Module | None, _: Any
) -> None:
    pruned = model if model is not None else bench.pruned_model(plan)
    state = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
    params = dict(pruned.named_parameters())
    for name, keep in bench.kept(plan).items():
        if name in params:  # prune reparametrises parameters; zeroed buffers stay plain
            state[f"{name}_orig"] = state.pop(name)
            state[f"{name}_mask"] = keep.cpu().float()  # prune's masks are float
    torch.save(state, path)


def _pt2(bench: Workbench, plan: PruningPlan, path: Path, model: nn.Module | None, _: Any) -> None:
    program = _program_model(bench, plan, model)
    torch.export.save(_exported(program, bench.val_inputs[:2]), path)


def _onnx(bench: Workbench, plan: PruningPlan, path: Path, model: nn.Module | None, _: Any) -> None:
    import onnxruntime

    program = _program_model(bench, plan, model)
    sample = bench.val_inputs[: bench.batch_size].cpu()
    torch.onnx.export(
        program, (sample,), str(path), dynamo=True, dynamic_shapes=({0: "batch"},), verbose=False
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = torch.from_numpy(session.run(None, {name: sample.numpy()})[0])
    with torch.no_grad():
        want = as_output_tensor(program(sample))
    if not torch.allclose(got, want, rtol=ONNX_RTOL, atol=ONNX_RTOL * float(want.abs().max())):
        path.unlink(missing_ok=True)
        raise WorkbenchError(
            f"the ONNX export differs from torch by {(got - want).abs().max():.3g} on the "
            "validation samples: not written"
        )


def _card(
    bench: Workbench,
    plan: PruningPlan,
    path: Path,
    model: nn.Module | None,
    latency: pd.DataFrame | None,
) -> None:
    report = report_of(bench, plan, model)
    metrics = pd.DataFrame({"dense": report.dense_metrics, "pruned": report.metrics}).rename_axis(
        "metric"
    )
    size = pd.DataFrame(
        {"dense": dict(report.dense_size), "pruned": dict(report.size)}
    ).rename_axis("size")
    lines = [
        "# Model card: pruned with Prune Workbench",
        "",
        f"Task: {report.task}. Granularity: {plan.granularity}. "
        f"Layers pruned: {len(plan.sparsity)}.",
        "",
        "## Metrics (validation set)",
        "",
        _markdown(metrics),
        "",
        "## Size",
        "",
        _markdown(size),
    ]
    cut = bench.removed_channels(plan)[1]
    if cut:
        lines += ["", "## Coupled groups cut together", ""]
        lines += [
            f"- {group.leader}"
            + (f" with {', '.join(group.names[1:])}" if len(group.names) > 1 else "")
            + f": {int(removed.sum())} of {group.channels} {group.unit}s removed"
            + (
                f", with their input columns in {', '.join(c.name for c in group.consumers)}"
                if group.consumers
                else ""
            )
            for group, removed in cut
        ]
    try:
        small = compact(bench, plan, model)
        lines += [
            "",
            f"Compacted (channels physically removed): {small.params:,} parameters, "
            f"{small.dense_bytes:,} bytes stored densely.",
        ]
        if int8_available():
            quantized = quantize(bench, plan, model)
            figures = ", ".join(
                f"{k} {v:.6g}" for k, v in bench.model_metrics(quantized.model).items()
            )
            lines += [
                "",
                f"Compacted int8 ({INT8_SCHEME}): {quantized.bytes:,} bytes measured "
                f"(safetensors); layers left fp32: {', '.join(quantized.fp32_layers) or 'none'}; "
                f"metrics: {figures}.",
            ]
    except WorkbenchError as error:
        lines += ["", f"Compaction: {error}."]
    if latency is not None:
        cols = ["label", "batch", "threads", "median_s", "iqr_s", "runs", "speedup"]
        shown = latency[cols].to_string(index=False)
        lines += ["", "## Latency (torch.utils.benchmark)", "", "```", shown, "```"]
    lines += ["", "## Plan", "", "```json", plan.to_json(), "```", "", "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in versions().items()]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    path.write_text("\n".join(lines) + "\n")


_WRITERS = {
    "plan": _plan,
    "plan-yaml": _plan_yaml,
    "safetensors": _safetensors,
    "safetensors-int8": _safetensors_int8,
    "torch-prune": _torch_prune,
    "pt2": _pt2,
    "onnx": _onnx,
    "card": _card,
}


# ---- helpers ---------------------------------------------------------------------------------


def _program_model(bench: Workbench, plan: PruningPlan, model: nn.Module | None) -> nn.Module:
    """The compacted model where compaction is available, else the masked one."""
    try:
        return compact(bench, plan, model).model.cpu()
    except WorkbenchError:
        return (model if model is not None else bench.pruned_model(plan)).cpu()


def _exported(model: nn.Module, sample: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export of `model`, its batch dimension dynamic where the model allows it."""
    model = model.eval()
    try:
        batch = {0: torch.export.Dim("batch")}
        return torch.export.export(model, (sample.cpu(),), dynamic_shapes=(batch,))
    except Exception:  # a model specialised to its batch size: export that size
        return torch.export.export(model, (sample.cpu(),))


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower().replace(".yml", ".yaml")
    if path.name.lower().endswith(".md"):
        return "card"
    if path.name.lower().endswith(".int8.safetensors"):
        return "safetensors-int8"
    for name, (ending, _) in EXPORT_FORMATS.items():
        if suffix == ending:
            return name
    raise WorkbenchError(f"cannot tell the export format of {path.name!r}: give format=")


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        return None
    return yaml


def _markdown(table: pd.DataFrame) -> str:
    """A Markdown table of a frame with a named index (pandas needs tabulate for this)."""
    head = [table.index.name or "", *map(str, table.columns)]
    rows = [[str(i), *map(_cell, row)] for i, row in table.iterrows()]
    lines = [head, ["---"] * len(head), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else str(value)


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prune-workbench")
    except PackageNotFoundError:
        return "source checkout"
