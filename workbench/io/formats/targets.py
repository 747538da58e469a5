"""What several data formats share: targets as class indices or values, and tensors from arrays."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from workbench.io.safety import DataError


def as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "USO":
            raise DataError(f"{name!r} holds {value.dtype} strings, not numbers")
        value = torch.from_numpy(np.array(value))  # a writable copy
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{name!r} is a {type(value).__name__}, not a tensor or array")
    if value.dim() == 0:
        raise DataError(f"{name!r} is a single number; expected one row per sample")
    if value.dtype == torch.bool:
        value = value.to(torch.int64)
    return value


def read_targets(
    raw: Any, source: str, key: str, class_names: Sequence[str] | None
) -> tuple[torch.Tensor | None, list[str], tuple[tuple[str, int], ...], list[str]]:
    """Targets as int64 class indices or float32 values, with class names and any label map."""
    notes: list[str] = []
    if raw is None:
        notes.append("no targets: label-free (the pruned model is compared with the dense one)")
        return None, list(class_names or []), (), notes
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "US":
        return categorical([str(v) for v in raw.reshape(-1)], source, key, class_names)
    values = as_tensor(raw, f"{source}:{key}")
    if values.dim() == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.dim() != 1:
        raise DataError(
            f"{source!r}: the targets {key!r} have shape {tuple(values.shape)}; expected one "
            "value per sample (class indices or numbers), not one-hot or multi-output"
        )
    if values.is_floating_point():
        if not torch.isfinite(values).all():
            raise DataError(f"{source!r}: the targets {key!r} contain NaN or infinite values")
        if (values == values.round()).all():
            values = values.to(torch.int64)  # integral: class indices, unless the model says not
        else:
            return values.to(torch.float32), [], (), notes
    values = values.to(torch.int64)
    names = list(class_names or [])
    return values, names, (), notes


def categorical(
    labels: list[str], source: str, key: str, class_names: Sequence[str] | None
) -> tuple[torch.Tensor, list[str], tuple[tuple[str, int], ...], list[str]]:
    order = class_order(
        sorted(set(labels)), class_names, f"{source!r}: the targets {key!r} hold labels"
    )
    index = {name: i for i, name in enumerate(order)}
    targets = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    label_map = tuple((name, i) for name, i in index.items())
    shown = ", ".join(f"{name} → {i}" for name, i in label_map[:12])
    notes = [
        f"categorical targets mapped to classes: {shown}" + (" ..." if len(order) > 12 else "")
    ]
    return targets, order, label_map, notes


def class_order(found: Sequence[str], class_names: Sequence[str] | None, what: str) -> list[str]:
    """The given class order, which must hold every label found; else the labels as found."""
    if not class_names:
        return list(found)
    order = [str(c) for c in class_names]
    unknown = [label for label in found if label not in order]
    if unknown:
        raise DataError(
            f"{what} that are not among the given classes ({', '.join(order)}): "
            f"{', '.join(unknown[:6])}"
        )
    return order
