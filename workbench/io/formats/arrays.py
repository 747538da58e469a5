"""Tensors and arrays: torch.save tensors (weights_only), .npz (allow_pickle=False), .npy and
safetensors. One class; the four formats differ only in how they are told and read."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from math import prod
from pathlib import PurePosixPath
from typing import Any, ClassVar

import numpy as np
import torch

from workbench.io.formats.base import Head, first_line, is_safetensors
from workbench.io.formats.loaded import DATA_FORMATS, LoadedData
from workbench.io.formats.targets import as_tensor, read_targets
from workbench.io.safety import (
    DEFAULT_LIMITS,
    DataError,
    FormatError,
    Limits,
    SafeZip,
    SizeLimitError,
    Source,
    UnsafeFileError,
    torch_load,
)

_INPUT_KEYS = ("inputs", "input", "x", "data", "features", "images", "input_ids", "samples")
_TARGET_KEYS = ("targets", "target", "y", "labels", "label", "classes")
_SPLITS = ("val", "valid", "validation", "test")


@dataclass(frozen=True)
class ArrayOptions:
    """Tensors, .npz, .npy and safetensors data."""

    target: str | None = None  # the array holding the targets; "" means none (label-free)
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class ArrayFormat:
    """Named arrays in one file: inputs, targets, and perhaps a training split."""

    name: str
    claims: Callable[[Head], bool]
    read: Callable[[Source, Limits], Any]  # the file -> a mapping, a pair or one array
    Options: ClassVar[type] = ArrayOptions

    @property
    def label(self) -> str:
        return DATA_FORMATS[self.name]

    def sniff(self, head: Head) -> bool:
        return self.claims(head)

    def load(self, src: Source, options: ArrayOptions) -> LoadedData:
        arrays = self.read(src, options.limits)
        return _from_arrays(arrays, src.name, self.name, options.target, options.class_names)


def _read_tensors(src: Source, limits: Limits) -> Any:
    return torch_load(
        src,
        trust=False,
        what=f"the data file {src.name!r}",
        advice="Data files are never unpickled: save plain tensors, e.g. "
        "torch.save({'inputs': X, 'targets': y}, path), or numpy.savez.",
        limits=limits,
    )


def _read_safetensors(src: Source, limits: Limits) -> Any:
    from safetensors.torch import load

    try:
        return load(src.read())
    except Exception as error:  # noqa: BLE001 - safetensors raises its own types
        raise FormatError(
            f"{src.name!r} is not a valid safetensors file (truncated or corrupt?): "
            f"{first_line(error, 200)}"
        ) from None


def _read_npy(src: Source, limits: Limits) -> Any:
    return {"inputs": _np_load(io.BytesIO(src.read()), src.name, limits)}


def _read_npz(src: Source, limits: Limits) -> Any:
    arrays = {}
    with SafeZip(src, limits=limits, what=".npz archive") as archive:
        budget = limits.max_elements
        for member in archive.names:
            key = PurePosixPath(member).stem
            arrays[key] = _np_load(
                io.BytesIO(archive.read(member)),
                f"{src.name}:{member}",
                replace(limits, max_elements=budget),
            )
            budget -= arrays[key].size
    return arrays


#: In the registry's order (io/data.py): npy and safetensors by their headers, npz when every
#: member is an array; tensors (a torch.save zip, or named or shaped like a pickle and not
#: text named as text) come after the text formats and before a zip of images.
NPY = ArrayFormat("npy", lambda head: head.startswith(b"\x93NUMPY"), _read_npy)
SAFETENSORS = ArrayFormat(
    "safetensors", lambda head: is_safetensors(head, head.size), _read_safetensors
)
NPZ = ArrayFormat(
    "npz",
    lambda head: bool(head.members) and all(n.endswith(".npy") for n in head.members),
    _read_npz,
)
TENSORS = ArrayFormat(
    "tensors",
    lambda head: any(n.endswith("data.pkl") for n in head.members or ()) or head.pickle_like,
    _read_tensors,
)


def _check_npy_header(f: io.BytesIO, name: str, limits: Limits) -> None:
    """The array a .npy header declares fits in the file and under the element cap.

    np.load allocates what the header says before it reads the data, so a 100-byte file that
    claims 10^10 elements would cost 80 GB: refuse it from the header alone.
    """
    try:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0  # 3.0 differs only in the text encoding
        )
        shape, _fortran, dtype = read_header(f)
    except (ValueError, EOFError, OSError, SyntaxError, TypeError) as error:
        raise FormatError(f"{name!r} is not a valid .npy array: {first_line(error, 200)}") from None
    count = prod(shape)
    if dtype.hasobject:
        return  # refused below, by np.load(allow_pickle=False)
    if count > limits.max_elements:
        raise SizeLimitError(
            f"{name!r} declares an array of {'×'.join(map(str, shape))} = {count:,} elements, "
            f"over the {limits.max_elements:,}-element limit"
        )
    left = len(f.getbuffer()) - f.tell()
    if count * dtype.itemsize > left:
        raise FormatError(
            f"{name!r} is truncated or its header is wrong: it declares "
            f"{'×'.join(map(str, shape))} {dtype} ({count * dtype.itemsize:,} bytes) but holds "
            f"{left:,} bytes of data"
        )
    f.seek(0)


def _np_load(f: io.BytesIO, name: str, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    _check_npy_header(f, name, limits)
    try:
        return np.load(f, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error) or "Object arrays" in str(error):
            raise UnsafeFileError(
                f"{name!r} holds an object array, which only unpickling can read (and "
                "unpickling runs code): save numeric or string arrays"
            ) from None
        raise FormatError(f"{name!r} is not a valid .npy array: {error}") from None
    except (EOFError, OSError) as error:
        raise FormatError(f"{name!r} is truncated or corrupt: {error}") from None


def _from_arrays(
    obj: Any, source: str, fmt: str, target: str | None, class_names: Sequence[str] | None
) -> LoadedData:
    if isinstance(obj, (tuple, list)) and len(obj) in (1, 2):
        obj = {"inputs": obj[0], **({"targets": obj[1]} if len(obj) == 2 else {})}
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        obj = {"inputs": obj}
    if not isinstance(obj, Mapping):
        raise DataError(
            f"{source!r} holds a {type(obj).__name__}; expected a dict with inputs and targets "
            "(e.g. {'inputs': X, 'targets': y}), an (inputs, targets) pair or one tensor"
        )
    arrays = {str(k): v for k, v in obj.items()}
    names = [str(n) for n in _as_list(arrays.pop("class_names", None))] or None
    inputs_key, targets_key = _pick_keys(arrays, source, target)
    train_keys = _train_keys(arrays, inputs_key, targets_key)
    inputs = as_tensor(arrays[inputs_key], f"{source}:{inputs_key}")
    raw_targets = arrays.get(targets_key) if targets_key else None
    targets, class_names, label_map, notes = read_targets(
        raw_targets, source, targets_key or "", class_names or names
    )
    train = None
    if train_keys is not None:
        x_train = as_tensor(arrays[train_keys[0]], f"{source}:{train_keys[0]}")
        y_train = None
        if train_keys[1] is not None:
            y_train, *_ = read_targets(arrays[train_keys[1]], source, train_keys[1], class_names)
        train = (x_train, y_train)
        notes.append(f"validation: {inputs_key!r}; training split kept apart: {train_keys[0]!r}")
    _check_lengths(inputs, targets, source)
    if inputs.is_floating_point() and not torch.isfinite(inputs).all():
        bad = int((~torch.isfinite(inputs)).sum())
        raise DataError(f"{source!r}: the inputs contain {bad:,} NaN or infinite values")
    return LoadedData.of(
        inputs,
        targets,
        source,
        fmt,
        _input_kind(inputs),
        train,
        class_names=tuple(class_names),
        target_name=targets_key or "",
        label_map=label_map,
        notes=tuple(notes),
    )


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else []


def _pick_keys(arrays: dict[str, Any], source: str, target: str | None) -> tuple[str, str | None]:
    keys = list(arrays)
    lower = {k.lower(): k for k in keys}
    if target and target not in arrays:
        raise DataError(
            f"{source!r} has no array {target!r}; it holds {', '.join(keys) or 'nothing'}"
        )
    val_inputs = _find(lower, [f"{k}_{s}" for s in _SPLITS for k in _INPUT_KEYS])
    if val_inputs is not None:
        suffix = val_inputs.rsplit("_", 1)[1]
        targets = target if target else _find(lower, [f"{k}_{suffix}" for k in _TARGET_KEYS])
        return val_inputs, (None if target == "" else targets)
    inputs = _find(lower, list(_INPUT_KEYS))
    targets = target if target else _find(lower, list(_TARGET_KEYS))
    if target == "":
        targets = None
    if inputs is None:
        rest = [k for k in keys if k != targets]
        if len(rest) == 1:
            inputs = rest[0]
        else:
            raise DataError(
                f"{source!r} holds {', '.join(keys) or 'nothing'}: expected an array named "
                f"{' / '.join(_INPUT_KEYS[:4])} for the inputs (and {' / '.join(_TARGET_KEYS[:3])} "
                "for the targets)"
            )
    return inputs, targets


def _train_keys(
    arrays: dict[str, Any], inputs_key: str, targets_key: str | None
) -> tuple[str, str | None] | None:
    for split in _SPLITS:
        if inputs_key.endswith(f"_{split}"):
            x_train = inputs_key.removesuffix(f"_{split}") + "_train"
            y_train = targets_key.removesuffix(f"_{split}") + "_train" if targets_key else None
            if x_train in arrays:
                return x_train, y_train if y_train in arrays else None
    return None


def _find(lower: dict[str, str], candidates: list[str]) -> str | None:
    return next((lower[c] for c in candidates if c in lower), None)


def _check_lengths(inputs: torch.Tensor, targets: torch.Tensor | None, source: str) -> None:
    if len(inputs) == 0:
        raise DataError(f"{source!r} holds no samples")
    if targets is not None and len(targets) != len(inputs):
        raise DataError(
            f"{source!r} has {len(inputs):,} inputs but {len(targets):,} targets; expected one "
            "target per input"
        )


def _input_kind(inputs: torch.Tensor) -> str:
    per_sample = inputs.dim() - 1
    if not inputs.is_floating_point() and per_sample == 1:
        return "text"  # token ids
    return {1: "tabular", 2: "signal", 3: "image"}.get(per_sample, "other")
