"""Checks before use, and a loaded model with its data turned into a Workbench.

`check` runs a dry forward pass on one batch and says, for shapes, dtypes, number of classes
and target ranges, what was expected and what was found; it reports NaN/Inf weights by layer
and explains a model with no prunable layers. `build_workbench` runs the checks, prepares the
tensors (dtype, shape, targets for the task) and builds the engine, yielding progress.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from math import prod
from typing import Any

import pandas as pd
import torch
from torch import nn

from workbench.evaluate.graph import trace
from workbench.evaluate.metrics import declared_task
from workbench.evaluate.modelling import as_output_tensor as _as_tensor
from workbench.evaluate.workbench import DEFAULT_CACHE_BYTES, Workbench
from workbench.io.data import LoadedData
from workbench.io.models import LoadedModel
from workbench.io.safety import CheckError, Limits
from workbench.io.sandbox import SANDBOXED_FORMATS, DryRunError
from workbench.io.sandbox import dry_run as sandbox_dry_run
from workbench.models.info import ModelInfo
from workbench.progress import Progress, drain
from workbench.pruning.layers import PRUNABLE_MODULES, find_prunable_layers

DRY_RUN_BATCH = 8
WORKBENCH_BATCH = 512  # the batch size build_workbench gives the engine
# Models whose dry run finished in a child process, with the batch shapes it ran.
_SANDBOX_PASSED: weakref.WeakKeyDictionary[nn.Module, set] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Finding:
    level: str  # "ok" | "info" | "warning" | "error"
    check: str  # what was checked: "prunable layers", "weights", "dry run", ...
    message: str


@dataclass(frozen=True)
class CheckReport:
    findings: tuple[Finding, ...]
    task: str | None  # "classification" | "regression", once the dry run told
    n_outputs: int | None = None  # logits per sample (1 for a regressor)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def table(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "level": [f.level for f in self.findings],
                "check": [f.check for f in self.findings],
                "message": [f.message for f in self.findings],
            }
        )

    def raise_for_errors(self) -> None:
        if self.errors:
            first, rest = self.errors[0], len(self.errors) - 1
            more = f" (and {rest} more problem{'s' if rest > 1 else ''})" if rest else ""
            raise CheckError(f"{first.check}: {first.message}{more}")


@dataclass(frozen=True)
class Prepared:
    """Tensors ready for `Workbench(model, (inputs, targets), task=task, batch_size=...)`."""

    inputs: torch.Tensor
    targets: torch.Tensor | None
    task: str
    batch_size: int
    notes: tuple[str, ...] = field(default=())
    #: The data's training split, fitted as the validation inputs are (None: there is none).
    train: tuple[torch.Tensor, torch.Tensor | None] | None = None


def check(
    model: LoadedModel | nn.Module,
    data: LoadedData,
    *,
    task: str | None = None,
    limits: Limits | None = None,
) -> CheckReport:
    """Every check, each a Finding; errors do not raise (see CheckReport.raise_for_errors).

    The dry run of a model whose code comes from its file (TorchScript, torch.export) first
    runs in a child process, stopped after `limits.dry_run_seconds`. Limits default to the
    operator's (`Limits.from_env()`).
    """
    return _run(model, data, task, limits)[0]


def prepare(model: LoadedModel | nn.Module, data: LoadedData, **options: Any) -> Prepared:
    """The tensors the workbench needs (options as `check`'s), or CheckError saying why not."""
    return _prepared(model, data, **options)[1]


def _prepared(
    model: LoadedModel | nn.Module,
    data: LoadedData,
    task: str | None = None,
    limits: Limits | None = None,
) -> tuple[CheckReport, Prepared]:
    report, prepared = _run(model, data, task, limits)
    report.raise_for_errors()
    assert prepared is not None  # a report without errors comes with its tensors
    return report, prepared


def _run(
    loaded: LoadedModel | nn.Module, data: LoadedData, task: str | None, limits: Limits | None
) -> tuple[CheckReport, Prepared | None]:
    limits = limits or Limits.from_env()
    info = loaded if isinstance(loaded, LoadedModel) else None
    model = loaded.model if isinstance(loaded, LoadedModel) else loaded
    findings: list[Finding] = []
    if task not in (None, "classification", "regression", "embedding"):
        raise CheckError(
            f"task must be 'classification', 'regression' or 'embedding', got {task!r}"
        )

    findings.append(_prunable(model))
    findings.extend(_finite_weights(model))

    inputs, notes = _fit_inputs(info, model, data, findings)
    batch = info.fixed_batch if info and info.fixed_batch else min(DRY_RUN_BATCH, len(inputs))
    if info and info.fixed_batch and len(inputs) < info.fixed_batch:
        findings.append(
            Finding(
                "error",
                "batch size",
                f"the program was exported for batches of exactly {info.fixed_batch}; the data "
                f"has only {len(inputs)} samples",
            )
        )
        return CheckReport(tuple(findings), None), None
    # The child runs a whole batch of the size the engine will use, not just the first few.
    full = inputs[: info.fixed_batch if info and info.fixed_batch else WORKBENCH_BATCH]
    output = _dry_run(model, inputs[:batch], findings, info, limits, full)
    if output is None:
        return CheckReport(tuple(findings), None), None
    n_outputs = 1 if output.dim() == 1 else output.shape[1]
    task = task or declared_task(model) or ("classification" if n_outputs > 1 else "regression")
    targets = _fit_targets(data, task, n_outputs, findings)
    if any(f.level == "error" for f in findings):
        return CheckReport(tuple(findings), task, n_outputs), None

    batch_size = WORKBENCH_BATCH
    if info and info.fixed_batch:
        batch_size = info.fixed_batch
        keep = len(inputs) - len(inputs) % batch_size
        if keep < len(inputs):
            notes.append(
                f"kept {keep} of {len(inputs)} samples: the program runs whole batches of "
                f"{batch_size}"
            )
            inputs = inputs[:keep]
            targets = None if targets is None else targets[:keep]
    train = _fit_train(info, model, data, task, n_outputs, findings)
    prepared = Prepared(inputs, targets, task, batch_size, tuple(notes), train)
    findings.extend(Finding("info", "data", note) for note in notes)
    return CheckReport(tuple(findings), task, n_outputs), prepared


def _prunable(model: nn.Module) -> Finding:
    graph_module = trace(model)
    layers = find_prunable_layers(
        model if graph_module is None else graph_module,
        None if graph_module is None else graph_module.graph,
    )
    if layers:
        kinds = Counter(layer.kind for layer in layers)
        summary = ", ".join(f"{n} {k}" for k, n in kinds.items())
        # Whether the engine can cut the model (torch.fx, else torch.export) is known once it
        # is built: `Workbench.incremental_note`, shown on the Prune page.
        return Finding("ok", "prunable layers", f"{len(layers)} prunable layers: {summary}")
    holders = Counter(
        getattr(module, "original_name", None) or type(module).__name__
        for module in model.modules()
        if any(True for _ in module.parameters(recurse=False))
    )
    found = ", ".join(f"{k} ({n})" for k, n in holders.most_common(8)) or "no parameters at all"
    hint = ""
    if any(name.startswith("ConvTranspose") for name in holders):
        hint = " Transposed convolutions are not pruned here."
    return Finding(
        "error",
        "prunable layers",
        "the model has no prunable layers: the workbench prunes the weights of Linear, "
        "Conv1d/2d/3d and transformers' Conv1D layers (or of linear and convolution operations "
        "in its graph); this "
        f"model keeps its parameters in {found}.{hint}",
    )


def _finite_weights(model: nn.Module) -> list[Finding]:
    bad = []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            if nan or inf:
                parts = [f"{nan:,} NaN" if nan else "", f"{inf:,} infinite" if inf else ""]
                bad.append(f"{name} ({' and '.join(p for p in parts if p)})")
    if not bad:
        return [Finding("ok", "weights", "every weight is finite")]
    return [
        Finding(
            "error",
            "weights",
            f"NaN or infinite values in {len(bad)} tensor{'s' if len(bad) > 1 else ''}: "
            + "; ".join(bad[:8])
            + (f"; and {len(bad) - 8} more" if len(bad) > 8 else ""),
        )
    ]


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _fit_inputs(
    info: LoadedModel | None, model: nn.Module, data: LoadedData, findings: list[Finding]
) -> tuple[torch.Tensor, list[str]]:
    inputs, notes = data.inputs, []
    expected_dtype = (info.input_dtype if info else None) or _model_dtype(model)
    if (
        inputs.is_floating_point()
        and expected_dtype is not None
        and expected_dtype.is_floating_point
        and inputs.dtype != expected_dtype
    ):
        notes.append(
            f"inputs converted from {_dtype(inputs.dtype)} to {_dtype(expected_dtype)}, "
            "the model's dtype"
        )
        inputs = inputs.to(expected_dtype)
    expected = info.input_shape if info else None
    if expected is not None:
        found = tuple(inputs.shape[1:])
        fits = len(found) == len(expected) and all(
            e is None or e == f for e, f in zip(expected, found, strict=True)
        )
        if not fits and None not in expected and prod(found) == prod(expected):
            inputs = inputs.reshape(len(inputs), *expected)
            notes.append(f"each sample reshaped from {_shape(found)} to {_shape(expected)}")
        elif not fits:
            findings.append(
                Finding(
                    "error",
                    "input shape",
                    f"the model expects samples of shape {_shape(expected)}; the data's samples "
                    f"have shape {_shape(found)}",
                )
            )
    if info and info.input_dtype is not None:
        wants_float = info.input_dtype.is_floating_point
        if wants_float and not inputs.is_floating_point():
            findings.append(
                Finding(
                    "error",
                    "input dtype",
                    f"the model expects {_dtype(info.input_dtype)} inputs; the data holds "
                    f"{_dtype(inputs.dtype)} (raw pixel values or token ids?): convert them to "
                    "floats, scaled as the model was trained",
                )
            )
        elif not wants_float and inputs.is_floating_point():
            findings.append(
                Finding(
                    "error",
                    "input dtype",
                    f"the model takes {_dtype(info.input_dtype)} token ids; the data holds "
                    f"{_dtype(inputs.dtype)} values: give a text file, or integer token ids",
                )
            )
    return inputs, notes


def _dry_run(
    model: nn.Module,
    batch: torch.Tensor,
    findings: list[Finding],
    info: LoadedModel | None,
    limits: Limits,
    full: torch.Tensor,
) -> torch.Tensor | None:
    if any(f.level == "error" and f.check.startswith("input") for f in findings):
        return None
    where = f"a batch of shape {_shape(tuple(batch.shape))} ({_dtype(batch.dtype)})"
    if (
        info is not None
        and info.origin is not None
        and info.format in SANDBOXED_FORMATS
        and (tuple(full.shape), full.dtype) not in _SANDBOX_PASSED.get(model, set())
    ):
        try:
            sandbox_dry_run(info.origin, info.format, full, limits.dry_run_seconds)
        except DryRunError as error:
            findings.append(Finding("error", "dry run", str(error)))
            return None
        _SANDBOX_PASSED.setdefault(model, set()).add((tuple(full.shape), full.dtype))
    try:
        with torch.no_grad():
            raw = model(batch)
    except Exception as error:  # noqa: BLE001 - the model is the user's: report what it said
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        findings.append(
            Finding(
                "error",
                "dry run",
                f"the model failed on {where}: {type(error).__name__}: {message}"
                + _first_layer_hint(model, batch),
            )
        )
        return None
    try:
        output = _as_tensor(raw)
    except TypeError as error:
        findings.append(Finding("error", "outputs", f"{error}; expected a tensor of logits"))
        return None
    if output.shape[:1] != batch.shape[:1]:
        findings.append(
            Finding(
                "error",
                "outputs",
                f"the model returned {output.shape[0] if output.dim() else 'a scalar'} outputs "
                f"for {len(batch)} inputs; expected one row per sample",
            )
        )
        return None
    if output.dim() == 2 and output.shape[1] == 1:
        output = output[:, 0]
    if output.dim() > 2:
        findings.append(
            Finding(
                "error",
                "outputs",
                f"the model returns {_shape(tuple(output.shape))} for {where}; expected "
                "(batch, classes) logits or one value per sample",
            )
        )
        return None
    if not output.is_floating_point() or not torch.isfinite(output).all():
        findings.append(
            Finding(
                "error",
                "outputs",
                f"the model's outputs on {where} are not finite numbers (NaN, inf, or "
                f"{_dtype(output.dtype)})",
            )
        )
        return None
    shape = _shape(tuple(output.shape[1:])) or "one value"
    findings.append(Finding("ok", "dry run", f"{where} gives outputs of {shape} per sample"))
    return output


def _first_layer_hint(model: nn.Module, batch: torch.Tensor) -> str:
    first = next(
        (m for m in model.modules() if isinstance(m, (*PRUNABLE_MODULES, nn.Embedding))), None
    )
    if isinstance(first, nn.Linear) and batch.shape[-1] != first.in_features:
        return (
            f". Its first layer (Linear {first.in_features}→{first.out_features}) expects "
            f"{first.in_features} features per sample; the data has {batch.shape[-1]}"
        )
    if isinstance(first, nn.modules.conv._ConvNd):
        dims = len(first.kernel_size)
        expected = f"(batch, {first.in_channels}, {', '.join(['…'] * dims)})"
        if batch.dim() != dims + 2 or batch.shape[1] != first.in_channels:
            return (
                f". Its first layer ({type(first).__name__}, {first.in_channels} input channels) "
                f"expects {expected}; the data is {_shape(tuple(batch.shape))}"
            )
    if isinstance(first, nn.Embedding) and batch.is_floating_point():
        return ". Its first layer is an Embedding: it takes int64 token ids, not floats"
    return ""


def _fit_targets(
    data: LoadedData, task: str, n_outputs: int, findings: list[Finding]
) -> torch.Tensor | None:
    targets = data.targets
    names = data.info.class_names
    if targets is None:
        findings.append(
            Finding(
                "info",
                "targets",
                f"no targets: label-free {task} (metrics compare the pruned model with the "
                "dense one: agreement, and the loss against the dense model's predictions)",
            )
        )
        return None
    if task == "embedding":
        if targets.is_floating_point() and not (targets == targets.round()).all():
            findings.append(
                Finding(
                    "error",
                    "targets",
                    "the model outputs embeddings; its targets must be class labels (for the "
                    "nearest-centroid accuracy), not values",
                )
            )
            return None
        findings.append(
            Finding(
                "ok",
                "targets",
                f"{len(torch.unique(targets))} classes in {len(targets):,} labels: "
                "nearest-centroid accuracy of the embeddings",
            )
        )
        return targets.long()
    if task == "classification":
        if targets.is_floating_point():
            if not (targets == targets.round()).all():
                example = targets[targets != targets.round()][0].item()
                findings.append(
                    Finding(
                        "error",
                        "targets",
                        f"the model outputs {n_outputs} classes, but the targets are not class "
                        f"indices (e.g. {example:g}); a classifier needs integer labels",
                    )
                )
                return None
            targets = targets.long()
        if n_outputs < 2:
            findings.append(
                Finding(
                    "error",
                    "targets",
                    "classification needs (batch, classes) logits; the model returns one value "
                    "per sample (a regressor)",
                )
            )
            return None
        low, high = int(targets.min()), int(targets.max())
        if low < 0 or high >= n_outputs:
            named = f" ({len(names)} classes in the data)" if names else ""
            findings.append(
                Finding(
                    "error",
                    "targets",
                    f"labels must be within 0..{n_outputs - 1} for a model with {n_outputs} "
                    f"outputs; found labels from {low} to {high}{named}",
                )
            )
            return None
        if names and len(names) > n_outputs:
            findings.append(
                Finding(
                    "error",
                    "classes",
                    f"the data has {len(names)} classes ({', '.join(names[:8])}) but the model "
                    f"outputs {n_outputs}",
                )
            )
            return None
        present = len(torch.unique(targets))
        findings.append(
            Finding(
                "ok",
                "targets",
                f"{present} of the model's {n_outputs} classes appear in {len(targets):,} labels",
            )
        )
        return targets
    if data.info.label_map:
        findings.append(
            Finding(
                "error",
                "targets",
                "the model returns one value per sample (a regressor), but the targets are "
                f"classes ({', '.join(names[:6])})",
            )
        )
        return None
    if n_outputs != 1:
        findings.append(
            Finding(
                "error",
                "targets",
                f"a regressor must return one value per sample; the model returns {n_outputs}",
            )
        )
        return None
    targets = targets.to(torch.float32)
    findings.append(
        Finding(
            "ok",
            "targets",
            f"regression targets from {targets.min().item():g} to {targets.max().item():g}",
        )
    )
    return targets


def _fit_train(
    info: LoadedModel | None,
    model: nn.Module,
    data: LoadedData,
    task: str,
    n_outputs: int,
    findings: list[Finding],
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The training split made to fit as the validation data is; a warning if it cannot."""
    if data.train is None:
        return None
    split = replace(data, inputs=data.train[0], targets=data.train[1], train=None)
    problems: list[Finding] = []
    inputs, _ = _fit_inputs(info, model, split, problems)
    targets = _fit_targets(split, task, n_outputs, problems)
    errors = [f.message for f in problems if f.level == "error"]
    if errors:
        findings.append(
            Finding("warning", "training data", f"the training split is not used: {errors[0]}")
        )
        return None
    return inputs, targets


# ---- building the engine ---------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What `build_workbench` ends with: the engine, the model's info and the checks' report."""

    bench: Workbench
    info: ModelInfo
    report: CheckReport
    #: The data's training split, fitted like the validation data (for recovery); None: none.
    train: tuple[torch.Tensor, torch.Tensor | None] | None = None


def build_workbench(
    model: LoadedModel,
    data: LoadedData,
    *,
    name: str | None = None,
    task: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    limits: Limits | None = None,
) -> Iterator[Progress[BuildResult]]:
    """Check, prepare and build the engine, step by step; the last event carries the result."""
    yield Progress(1, 3, "Checking the model and the data (a dry run on one batch)…")
    report, prepared = _prepared(model, data, task, limits)
    yield Progress(2, 3, f"Running the dense model on {len(prepared.inputs):,} samples…")
    bench = Workbench(
        model.model,
        (prepared.inputs, prepared.targets),
        task=prepared.task,  # type: ignore[arg-type]
        batch_size=prepared.batch_size,
        cache_bytes=cache_bytes,
        class_names=_class_names(data, report),
    )
    info = model_info(model, data, prepared, name=name)
    yield Progress(3, 3, "Ready.", BuildResult(bench, info, report, prepared.train))


def run_build(model: LoadedModel, data: LoadedData, **options: Any) -> BuildResult:
    """`build_workbench` drained (for code that shows no progress)."""
    return drain(build_workbench(model, data, **options))


def _class_names(data: LoadedData, report: CheckReport) -> list[str]:
    names = list(data.info.class_names)
    if report.task != "classification" or not report.n_outputs:
        return []
    if len(names) < report.n_outputs:
        names += [str(i) for i in range(len(names), report.n_outputs)]
    return names


def model_info(
    model: LoadedModel, data: LoadedData, prepared: Prepared, *, name: str | None = None
) -> ModelInfo:
    key = name or model.source
    labels = "" if data.labelled else " No targets: label-free, metrics compare with the dense."
    description = (
        f"Your {model.format_label} with {model.params:,} parameters, measured on your data "
        f"({data.info.source}, {len(prepared.inputs):,} samples).{labels}"
    )
    return ModelInfo(
        name=key,
        title=f"{model.source} (yours)",
        description=description,
        task=prepared.task,
        input_kind=model.input_kind or data.info.input_kind,
        input_shape=tuple(prepared.inputs.shape[1:]),
        class_names=tuple(data.info.class_names) if prepared.task == "classification" else (),
        feature_names=data.info.feature_names,
        target_name=data.info.target_name,
        dataset=f"Your data: {data.info.source}",
        n_train=len(data.train[0]) if data.train is not None else 0,
        n_val=len(prepared.inputs),
    )


def _shape(shape: tuple[int | None, ...]) -> str:
    return "×".join("?" if d is None else str(d) for d in shape)


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
