"""Recovering a pruned model's accuracy: fine-tuning with the zeros held, distillation from the
dense model, and gradual (AGP) pruning during training.

    run = wb.finetune(bench, plan, demo.train, epochs=5, distill=0.5)
    run.model      # holds torch.nn.utils.prune masks: training it further keeps the zeros
    run.history    # one row per step; the validation metrics on evaluation steps
    run.report     # the recovered model on the workbench's validation set

`finetune_iter` yields the same run as progress events (`TrainingStep`); a `threading.Event`
passed as `stop` ends it at the next batch with the best model so far.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from workbench.errors import WorkbenchError
from workbench.evaluate import Report, Workbench
from workbench.evaluate.metrics import METRICS, PRIMARY_METRIC
from workbench.evaluate.modelling import as_output_tensor, as_tensors
from workbench.progress import Progress, drain
from workbench.pruning.plan import PruningPlan
from workbench.recover.held import MaskHold, hold_with_prune
from workbench.recover.schedule import Schedule

__all__ = ["RecoverError", "Recovery", "TrainingStep", "finetune", "finetune_iter"]

Optimizer = Literal["adamw", "sgd"]
LrSchedule = Literal["cosine", "constant"]
#: Share of a training set's samples that may also be validation samples before a run refuses
#: (a few duplicates happen in real data; a copy of the validation set is a leak).
LEAK_SHARE = 0.5


class RecoverError(WorkbenchError):
    """A recovery that cannot run as asked (no training data, a leak, a frozen model, ...)."""


@dataclass
class Recovery:
    """The result of a run: the recovered model, how it got there, and its report."""

    model: nn.Module  # holds torch.nn.utils.prune masks where its layers are modules it calls
    history: pd.DataFrame
    report: Report
    plan: PruningPlan
    masks: dict[str, torch.Tensor]  # {tensor name: bool, True = kept} the run held at the end
    best_step: int  # the step whose weights `model` has (0: the pruned model before training)
    stopped: Literal["finished", "early stop", "cancelled"] = "finished"
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def plain_model(self) -> nn.Module:
        """A copy of `model` with the masks made permanent (`torch.nn.utils.prune.remove`):
        plain parameters holding the zeros, the parameter names of the original model."""
        model = copy.deepcopy(self.model)
        for module in model.modules():
            for hook in list(module._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(module, hook._tensor_name)
        return model


@dataclass(frozen=True)
class TrainingStep(Progress[Recovery]):
    """One optimizer step (or the end): `row` is its history row (validation metrics on
    evaluation steps), so a live chart can append it."""

    row: dict[str, float] = field(default_factory=dict)


def finetune(bench: Workbench, plan: PruningPlan, train_data: Any, **options: Any) -> Recovery:
    """Fine-tune the plan's pruned model on `train_data` (see `finetune_iter`)."""
    return drain(finetune_iter(bench, plan, train_data, **options))


def finetune_iter(
    bench: Workbench,
    plan: PruningPlan,
    train_data: Any,
    *,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: Optimizer = "adamw",
    weight_decay: float = 0.0,
    lr_schedule: LrSchedule = "cosine",
    distill: float = 0.0,
    temperature: float = 4.0,
    schedule: Schedule | None = None,
    seed: int = 0,
    eval_every: int | None = None,
    patience: int | None = 3,
    stop: threading.Event | None = None,
) -> Iterator[TrainingStep]:
    """Train the pruned model with the plan's zeros held; yield one event per step.

    The loss is `(1 - distill) · task loss + distill · T² · KL(teacher/T ‖ student/T)` for a
    classifier (MSE to the dense model's outputs for a regressor); without targets it is the
    distillation term alone. With a `schedule` the run starts from the dense model and prunes
    gradually (AGP), re-scoring with the plan's criterion at each pruning step and ending at the
    plan's sparsities exactly. The validation metric is measured every `eval_every` steps (once
    an epoch by default); the best weights at the plan's sparsity are kept, and `patience`
    evaluations without improvement stop the run early (None: never).
    """
    _check_settings(epochs, lr, batch_size, distill, temperature, eval_every, patience)
    inputs, targets = as_tensors(train_data)
    if bench.task == "embedding":  # labels are no targets of a vector: distil to the dense one
        targets = None
    labelled = targets is not None
    if not labelled and distill == 0:
        raise RecoverError(
            "the training data has no targets: recover by distillation from the dense model "
            "(distill=1) or bring labelled data"
        )
    if labelled and bench.task == "classification":
        targets = targets.long()
    notes = _leak_notes(bench, inputs)
    if not labelled and distill < 1:
        notes.append("the training data has no targets: the loss is the distillation term alone")
        distill = 1.0

    device = bench.device
    n_batches = math.ceil(len(inputs) / batch_size)
    total = epochs * n_batches
    schedule = schedule.resolved(total) if schedule is not None else None
    eval_every = eval_every or n_batches
    metric = PRIMARY_METRIC[bench.task if bench.labelled else f"{bench.task}-label-free"]
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0

    teacher = _teacher_outputs(bench, inputs) if distill > 0 else None
    start = plan if schedule is None else _start_plan(schedule, plan)
    student = bench.pruned_model(start)
    student.to(device)
    trainable = list(student.parameters())
    if not trainable:
        raise RecoverError("the model has no trainable parameters to fine-tune")
    for p in trainable:
        p.requires_grad_(True)
    held = MaskHold(student, bench.kept(start))
    weights = {layer.weight_name for layer in bench.prunable_layers}
    opt = _optimizer(optimizer, trainable, lr, weight_decay)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        if lr_schedule == "cosine"
        else torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    )
    trains = _can_train(student)
    if not trains:
        notes.append(
            "this model cannot switch to training mode (an exported program): it trains in "
            "evaluation mode, so BatchNorm statistics and dropout stay as exported"
        )

    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float]] = []
    start = time.perf_counter()
    at_target = schedule is None
    best_score = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    best_step, stale, stopped, step = 0, 0, "finished", 0
    # Step 0: where training starts (the one-shot model, or the dense one for a gradual run).
    scores = bench.model_metrics(student)
    first = {"step": 0, "epoch": 0, "train_loss": math.nan, "lr": lr}
    rows.append({**first, "sparsity": _sparsity(held.masks, weights, bench), **scores})
    if at_target:
        best_score, best_state = sign * scores[metric], _state(student)
    yield TrainingStep(0, total, "measured the starting point", row=rows[0])

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            order = torch.randperm(len(inputs), generator=generator)
            for batch in order.split(batch_size):
                if schedule is not None and schedule.prunes_at(step):
                    held.update(_rescored(bench, student, schedule.plan_at(plan, step)))
                    at_target = step >= schedule.end
                if trains:
                    student.train()
                loss = _loss(
                    bench.task,
                    as_output_tensor(student(inputs[batch].to(device))),
                    targets[batch].to(device) if labelled else None,
                    teacher[batch].to(device) if teacher is not None else None,
                    distill,
                    temperature,
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                held.apply()
                row = {
                    "step": step + 1,
                    "epoch": epoch + 1,
                    "train_loss": loss.item(),
                    "lr": opt.param_groups[0]["lr"],
                    "sparsity": _sparsity(held.masks, weights, bench),
                }
                sched.step()
                step += 1
                cancelled = stop is not None and stop.is_set()
                if step % eval_every == 0 or step == total or cancelled:
                    scores = bench.model_metrics(student)
                    row.update(scores)
                    if at_target and sign * scores[metric] > best_score:
                        best_score, best_state, best_step, stale = (
                            sign * scores[metric],
                            _state(student),
                            step,
                            0,
                        )
                    elif at_target:
                        stale += 1
                rows.append(row)
                message = f"epoch {epoch + 1}/{epochs} · loss {row['train_loss']:.4f}"
                if metric in row:
                    message += f" · {METRICS[metric].label.lower()} {_shown(metric, row[metric])}"
                yield TrainingStep(step, total, message, row=row)
                if cancelled:
                    stopped = "cancelled"
                elif patience is not None and at_target and stale >= patience:
                    stopped = "early stop"
                if stopped != "finished":
                    break
            if stopped != "finished":
                break

    if best_state is None:  # cancelled before a gradual run reached its target
        held.update(bench.kept(plan))  # the plan's own masks: the result is at its sparsity
        best_state, best_step = _state(student), step
        notes.append(
            "stopped before the gradual schedule reached the plan's sparsity: the result is the "
            "current weights pruned to the plan in one shot"
        )
    student.load_state_dict(best_state)
    held.apply()
    held.release()
    student.eval()
    report = bench.evaluate_model(student, plan)
    report.notes.extend(notes)
    model = _with_prune_masks(bench, student, held.masks, notes)
    result = Recovery(
        model=model,
        history=pd.DataFrame(rows, columns=_columns(rows)),
        report=report,
        plan=plan,
        masks=held.masks,
        best_step=best_step,
        stopped=stopped,
        notes=notes,
        seconds=time.perf_counter() - start,
    )
    yield TrainingStep(step, total, f"done: best at step {best_step}", result=result)


# ---- pieces ----------------------------------------------------------------------------------


def _check_settings(
    epochs: int,
    lr: float,
    batch_size: int,
    distill: float,
    temperature: float,
    eval_every: int | None,
    patience: int | None,
) -> None:
    problems = [
        (epochs < 1, f"epochs must be at least 1, got {epochs}"),
        (not lr > 0, f"the learning rate must be positive, got {lr}"),
        (batch_size < 1, f"the batch size must be at least 1, got {batch_size}"),
        (not 0 <= distill <= 1, f"the distillation weight must be in [0, 1], got {distill}"),
        (not temperature > 0, f"the temperature must be positive, got {temperature}"),
        (eval_every is not None and eval_every < 1, f"eval_every must be >= 1, got {eval_every}"),
        (patience is not None and patience < 1, f"patience must be >= 1, got {patience}"),
    ]
    for bad, message in problems:
        if bad:
            raise RecoverError(message)


def _leak_notes(bench: Workbench, inputs: torch.Tensor) -> list[str]:
    """Refuse a training set that is (mostly) the validation set; note smaller overlaps."""
    val = {_row_key(row) for row in bench.val_inputs.cpu()}
    shared = sum(_row_key(row) in val for row in inputs.cpu())
    if shared and (shared >= len(val) or shared > LEAK_SHARE * len(inputs)):
        raise RecoverError(
            f"{shared} of the {len(inputs)} training samples are validation samples: training on "
            "the validation set would report a leak as accuracy; split it into two disjoint "
            "parts (wb.split_data) or bring a separate training set"
        )
    if shared:
        return [f"{shared} training samples also appear in the validation set"]
    return []


def _row_key(row: torch.Tensor) -> bytes:
    return row.contiguous().numpy().tobytes()


def _teacher_outputs(bench: Workbench, inputs: torch.Tensor) -> torch.Tensor:
    """The dense model's outputs on the training inputs (no augmentation: computed once)."""
    dense = bench.pruned_model(PruningPlan()).to(bench.device).eval()
    with torch.no_grad():
        return torch.cat(
            [
                as_output_tensor(dense(chunk.to(bench.device))).float().cpu()
                for chunk in inputs.split(bench.batch_size)
            ]
        )


def _start_plan(schedule: Schedule, plan: PruningPlan) -> PruningPlan:
    return schedule.plan_at(plan, schedule.begin) if schedule.start > 0 else PruningPlan()


def _rescored(bench: Workbench, student: nn.Module, plan: PruningPlan) -> dict[str, torch.Tensor]:
    """The plan's masks scored on the student's current weights (the plan's criterion and
    granularity, on a workbench of the student with the same validation data)."""
    targets = bench.targets
    current = Workbench(
        student,
        (bench.val_inputs, targets),
        task=bench.task,
        device=bench.device,
        batch_size=bench.batch_size,
        cache_bytes=0,
    )
    return current.kept(plan)


def _loss(
    task: str,
    outputs: torch.Tensor,
    targets: torch.Tensor | None,
    teacher: torch.Tensor | None,
    distill: float,
    temperature: float,
) -> torch.Tensor:
    loss = outputs.new_zeros(())
    if targets is not None and distill < 1:
        if task == "classification":
            task_loss = F.cross_entropy(outputs, targets)
        else:
            task_loss = F.mse_loss(outputs.reshape(-1), targets.reshape(-1).to(outputs.dtype))
        loss = loss + (1 - distill) * task_loss
    if teacher is not None and distill > 0:
        if task == "classification":
            t = temperature
            kd = F.kl_div(
                F.log_softmax(outputs / t, dim=1),
                F.log_softmax(teacher.to(outputs.dtype) / t, dim=1),
                log_target=True,
                reduction="batchmean",
            ) * (t * t)
        else:
            kd = F.mse_loss(outputs.reshape(-1), teacher.reshape(-1).to(outputs.dtype))
        loss = loss + distill * kd
    return loss


def _optimizer(
    kind: Optimizer, params: list[nn.Parameter], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise RecoverError(f"unknown optimizer {kind!r}; choose 'adamw' or 'sgd'")


def _can_train(model: nn.Module) -> bool:
    try:
        model.train()
    except (NotImplementedError, RuntimeError):
        return False
    model.eval()
    return True


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _sparsity(masks: dict[str, torch.Tensor], weights: set[str], bench: Workbench) -> float:
    """Share of the prunable layers' weights held at zero."""
    total = sum(layer.params for layer in bench.prunable_layers)
    removed = sum(int((~m).sum()) for name, m in masks.items() if name in weights)
    return removed / total


def _with_prune_masks(
    bench: Workbench, model: nn.Module, masks: dict[str, torch.Tensor], notes: list[str]
) -> nn.Module:
    unwrapped = set(hold_with_prune(model, masks, bench.val_inputs[:1]))
    skipped = [
        layer.weight_name for layer in bench.prunable_layers if layer.weight_name in unwrapped
    ]
    if skipped:
        notes.append(
            "the model reads its weights outside its modules (a graph or TorchScript): its zeros "
            "are written into the weights, without torch.nn.utils.prune masks ("
            + ", ".join(skipped[:3])
            + (", ..." if len(skipped) > 3 else "")
            + ")"
        )
    return model


def _columns(rows: list[dict[str, float]]) -> list[str]:
    base = ["step", "epoch", "train_loss", "lr", "sparsity"]
    extra = sorted({k for row in rows for k in row} - set(base))
    return base + extra


def _shown(metric: str, value: float) -> str:
    return f"{value:.1%}" if METRICS[metric].is_percentage else f"{value:.4g}"
