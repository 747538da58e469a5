"""Load validation data people bring: tensors, arrays, a CSV, a zip of image folders, text lines.

Every loader returns `LoadedData`: inputs, targets (None: label-free, the workbench then compares
the pruned model with the dense one), and what the data is (classes, features, input kind).
Large sets are subsampled deterministically; one file can be split into train and validation
with a seed. Nothing is unpickled: .pt files are read with weights_only=True, .npz with
allow_pickle=False, and archives are checked and capped (see `safety`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from math import prod
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.io.formats.base import Builtin, Format, Registry
from workbench.io.safety import (
    DEFAULT_LIMITS,
    DataError,
    FormatError,
    Limits,
    LoadError,
    MissingDependencyError,
    SafeZip,
    SizeLimitError,
    Source,
    UnsafeFileError,
    as_source,
    is_zip,
    looks_like_pickle,
    torch_load,
)

#: Column names taken as the target when none is chosen (case-insensitive, in this order).
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle")
TARGET_NAMES = ("target", "label", "labels", "class", "y")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm", ".pbm")  # fmt: skip
#: Common normalisations for images: (mean, std) per channel, after scaling pixels to [0, 1].
NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "none": ((0.0,), (1.0,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "[-1, 1]": ((0.5,), (0.5,)),
}
#: How the app names each data format.
DATA_FORMATS = {
    "tensors": "PyTorch tensors (.pt)",
    "npz": "NumPy arrays (.npz)",
    "npy": "a NumPy array (.npy)",
    "safetensors": "safetensors tensors",
    "csv": "CSV table",
    "images": "zip of image folders",
    "text": "text lines",
}
_INPUT_KEYS = ("inputs", "input", "x", "data", "features", "images", "input_ids", "samples")
_TARGET_KEYS = ("targets", "target", "y", "labels", "label", "classes")
_SPLITS = ("val", "valid", "validation", "test")


@dataclass(frozen=True)
class DataInfo:
    """What the data is: shown to the user, and handed to ModelInfo."""

    source: str
    format: str  # "tensors" | "npz" | "npy" | "safetensors" | "csv" | "images" | "text"
    input_kind: str  # "image" | "signal" | "tabular" | "text" | "other"
    n: int  # validation samples kept
    n_total: int  # samples in the file (before split and subsampling)
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    target_name: str = ""
    # Original label -> class index, when targets were names (CSV strings, folder names).
    label_map: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()
    image_mean: tuple[float, ...] = ()  # the normalisation applied to images (for previews)
    image_std: tuple[float, ...] = ()
    examples: tuple[str, ...] = ()  # a few text inputs, as written


@dataclass(frozen=True)
class LoadedData:
    inputs: torch.Tensor
    targets: torch.Tensor | None  # None: no labels (label-free)
    info: DataInfo
    # Samples held out of validation: the file's own training split, or the seeded split's rest.
    train: tuple[torch.Tensor, torch.Tensor | None] | None = field(default=None, repr=False)

    @property
    def labelled(self) -> bool:
        return self.targets is not None

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(inputs, targets) for `Workbench(model, data.val)`."""
        return self.inputs, self.targets


def load_data(
    source: str | os.PathLike[str] | bytes,
    *,
    target: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    ignore: Sequence[str] = (),
    class_names: Sequence[str] | None = None,
    image_size: tuple[int, int] | int | None = None,
    channels: int | None = None,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None,
    max_length: int = 128,
    max_samples: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    limits: Limits | None = None,
    options: Any = None,
) -> LoadedData:
    """Load a validation set from a file.

    target: the CSV column (or tensor key) holding targets; None picks a column named like
    target/label/class/y if there is one; "" means no targets (label-free).
    class_names: class order for categorical targets (the model's output order); by default
    names are sorted (as torchvision's ImageFolder does).
    image_size: (height, width) to resize images to; channels: 1 or 3 (default: grayscale when
    every image is); mean/std: per-channel normalisation after scaling pixels to [0, 1].
    tokenizer: for text files, list of strings -> (N, L) token ids; default: UTF-8 bytes + 1,
    padded with 0 to max_length.
    max_samples: keep at most this many validation samples (seeded, stratified by class).
    val_fraction: split one file: this share (seeded, stratified) is validation, the rest
    `train`. Files with their own train/val split keep theirs.
    options: the format's own options (CsvOptions, ImageOptions, ...) instead of the keywords.
    """
    if max_samples is not None and max_samples < 1:
        raise DataError(f"max_samples must be at least 1, got {max_samples}")
    if val_fraction is not None and not 0 < val_fraction <= 1:
        raise DataError(f"val_fraction must be in (0, 1], got {val_fraction}")
    limits = limits or Limits.from_env()
    src = as_source(source, name=name, limits=limits, what="data file")
    fmt = kind or detect_data_format(src, limits=limits)
    if fmt not in DATA_REGISTRY:
        *most, last = DATA_FORMATS
        raise LoadError(f"unknown data format {fmt!r}; expected {', '.join(most)} or {last}")
    data_format = DATA_REGISTRY[fmt]
    keywords = {
        "target": target,
        "ignore": ignore,
        "class_names": class_names,
        "image_size": image_size,
        "channels": channels,
        "mean": mean,
        "std": std,
        "tokenizer": tokenizer,
        "max_length": max_length,
    }
    data = data_format.load(src, options or _options_for(data_format, keywords, limits))
    if val_fraction is not None and val_fraction < 1:
        data = _split(data, val_fraction, seed)
    if max_samples is not None and data.info.n > max_samples:
        data = _subsample(data, max_samples, seed)
    return data


# ---- format detection ----------------------------------------------------------------------------


def detect_data_format(src: Source, *, limits: Limits = DEFAULT_LIMITS) -> str:
    if src.path is not None and src.path.is_dir():
        raise DataError(f"{src.name!r} is a folder: zip an image folder and give the zip")
    head = src.head(64)
    added = DATA_REGISTRY.sniff(head)
    if added is not None:
        return added.name
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if len(head) >= 10 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= src.size - 8:
            return "safetensors"
    if is_zip(head):
        with SafeZip(src, limits=limits, what="data archive") as archive:
            names = archive.names
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "tensors"
        if any(n.lower().endswith(IMAGE_SUFFIXES) for n in names):
            return "images"
        raise FormatError(
            f"{src.name!r} is a zip archive with neither images (one sub-folder per class) nor "
            f"arrays: it holds {', '.join(names[:6]) or 'nothing'}"
        )
    suffix = src.suffix
    text = _decode(
        src.read() if src.size < (1 << 16) else src.head(1 << 16), src.name, strict=False
    )
    # A CSV may start with "c", "(" or "]" as a protocol-0 pickle does: the name decides first.
    if text is not None and suffix in TEXT_SUFFIXES:
        return "csv" if suffix in (".csv", ".tsv") else "text"
    if suffix in PICKLE_SUFFIXES or looks_like_pickle(head):
        return "tensors"
    if text is None:
        raise FormatError(
            f"{src.name!r} is not a data file we read: expected .pt/.npz tensors, a CSV, a zip "
            f"of image folders or a text file; found binary bytes {head[:8].hex(' ')}"
        )
    return "csv" if _delimiter(text) is not None else "text"


def _decode(data: bytes, name: str, strict: bool = True) -> str | None:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # A cut in the middle of a multi-byte character at the end of a sample is fine.
        if not strict and error.start >= len(data) - 3:
            return data[: error.start].decode("utf-8-sig")
        if strict:
            raise DataError(
                f"{name!r} is not UTF-8 text: byte {error.start} is {data[error.start]:#04x}"
            ) from None
        return None


def _delimiter(text: str) -> str | None:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(lines) < 2:
        return "," if lines and "," in lines[0] else None
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
    except csv.Error:
        return None
    counts = {line.count(dialect.delimiter) for line in lines}
    return dialect.delimiter if len(counts) == 1 and counts != {0} else None


# ---- tensors and arrays ----------------------------------------------------------------------


def _read_arrays(src: Source, fmt: str, limits: Limits) -> Any:
    if fmt == "tensors":
        return torch_load(
            src,
            trust=False,
            what=f"the data file {src.name!r}",
            advice="Data files are never unpickled: save plain tensors, e.g. "
            "torch.save({'inputs': X, 'targets': y}, path), or numpy.savez.",
            limits=limits,
        )
    if fmt == "safetensors":
        from safetensors.torch import load

        try:
            return load(src.read())
        except Exception as error:  # noqa: BLE001 - safetensors raises its own types
            raise FormatError(
                f"{src.name!r} is not a valid safetensors file (truncated or corrupt?): "
                f"{str(error).splitlines()[0][:200]}"
            ) from None
    if fmt == "npy":
        return {"inputs": _np_load(io.BytesIO(src.read()), src.name, limits)}
    arrays = {}
    with SafeZip(src, limits=limits, what=".npz archive") as archive:
        budget = limits.max_elements
        for member in archive.names:
            key = PurePosixPath(member).stem
            arrays[key] = _np_load(io.BytesIO(archive.read(member)), f"{src.name}:{member}",
                                   replace(limits, max_elements=budget))  # fmt: skip
            budget -= arrays[key].size
    return arrays


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
        raise FormatError(f"{name!r} is not a valid .npy array: {_first(error)}") from None
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


def _first(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


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
    inputs = _tensor(arrays[inputs_key], f"{source}:{inputs_key}")
    raw_targets = arrays.get(targets_key) if targets_key else None
    targets, class_names, label_map, notes = _targets(
        raw_targets, source, targets_key or "", class_names or names
    )
    train = None
    if train_keys is not None:
        x_train = _tensor(arrays[train_keys[0]], f"{source}:{train_keys[0]}")
        y_train = None
        if train_keys[1] is not None:
            y_train, *_ = _targets(arrays[train_keys[1]], source, train_keys[1], class_names)
        train = (x_train, y_train)
        notes.append(f"validation: {inputs_key!r}; training split kept apart: {train_keys[0]!r}")
    _check_lengths(inputs, targets, source)
    if inputs.is_floating_point() and not torch.isfinite(inputs).all():
        bad = int((~torch.isfinite(inputs)).sum())
        raise DataError(f"{source!r}: the inputs contain {bad:,} NaN or infinite values")
    info = DataInfo(
        source=source,
        format=fmt,
        input_kind=_input_kind(inputs),
        n=len(inputs),
        n_total=len(inputs) + (len(train[0]) if train else 0),
        class_names=tuple(class_names),
        target_name=targets_key or "",
        label_map=label_map,
        notes=tuple(notes),
    )
    return LoadedData(inputs=inputs, targets=targets, info=info, train=train)


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


def _tensor(value: Any, name: str) -> torch.Tensor:
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


def _targets(
    raw: Any, source: str, key: str, class_names: Sequence[str] | None
) -> tuple[torch.Tensor | None, list[str], tuple[tuple[str, int], ...], list[str]]:
    """Targets as int64 class indices or float32 values, with class names and any label map."""
    notes: list[str] = []
    if raw is None:
        notes.append("no targets: label-free (the pruned model is compared with the dense one)")
        return None, list(class_names or []), (), notes
    if isinstance(raw, np.ndarray) and raw.dtype.kind in "US":
        return _categorical([str(v) for v in raw.reshape(-1)], source, key, class_names)
    values = _tensor(raw, f"{source}:{key}")
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


def _categorical(
    labels: list[str], source: str, key: str, class_names: Sequence[str] | None
) -> tuple[torch.Tensor, list[str], tuple[tuple[str, int], ...], list[str]]:
    found = sorted(set(labels))
    if class_names:
        order = [str(c) for c in class_names]
        unknown = [label for label in found if label not in order]
        if unknown:
            raise DataError(
                f"{source!r}: the targets {key!r} hold labels that are not among the given "
                f"classes ({', '.join(order)}): {', '.join(unknown[:6])}"
            )
    else:
        order = found
    index = {name: i for i, name in enumerate(order)}
    targets = torch.tensor([index[label] for label in labels], dtype=torch.int64)
    label_map = tuple((name, i) for name, i in index.items())
    shown = ", ".join(f"{name} → {i}" for name, i in label_map[:12])
    notes = [
        f"categorical targets mapped to classes: {shown}" + (" ..." if len(order) > 12 else "")
    ]
    return targets, order, label_map, notes


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


# ---- CSV -------------------------------------------------------------------------------------


def _read_csv(
    src: Source,
    target: str | None,
    ignore: Sequence[str],
    class_names: Sequence[str] | None,
    limits: Limits = DEFAULT_LIMITS,
) -> LoadedData:
    text = _decode(src.read(), src.name)
    assert text is not None
    if not text.strip():
        raise DataError(f"the CSV file {src.name!r} is empty")
    delimiter = "\t" if src.suffix == ".tsv" else (_delimiter(text[: 1 << 16]) or ",")
    # Bounded before pandas parses anything: its cost grows with every column.
    header = next((line for line in text.splitlines() if line.strip()), "")
    columns = header.count(delimiter) + 1
    if columns > limits.max_columns:
        raise SizeLimitError(
            f"{src.name!r} has {columns:,} columns, over the {limits.max_columns:,}-column limit"
        )
    cells = columns * text.count("\n")
    if cells > limits.max_elements:
        raise SizeLimitError(
            f"{src.name!r} has about {cells:,} values, over the {limits.max_elements:,} limit"
        )
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter)
    except pd.errors.EmptyDataError:
        raise DataError(f"the CSV file {src.name!r} is empty") from None
    except (pd.errors.ParserError, ValueError) as error:
        raise DataError(
            f"{src.name!r} is not a well-formed CSV: {str(error).splitlines()[0]}"
        ) from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if len(frame) == 0:
        raise DataError(f"the CSV file {src.name!r} has a header ({_few(columns)}) but no rows")
    duplicates = [c for c, n in Counter(columns).items() if n > 1]
    if duplicates:
        raise DataError(f"{src.name!r} has duplicate columns: {', '.join(duplicates)}")
    missing = [c for c in ignore if c not in columns]
    if missing:
        raise DataError(f"{src.name!r} has no column {missing[0]!r} to ignore")
    target_col = _target_column(columns, target, src.name)
    notes: list[str] = []
    if target is None and target_col is not None:
        notes.append(f"target column: {target_col!r} (chosen by its name)")
    features = [c for c in columns if c != target_col and c not in ignore]
    if not features:
        raise DataError(f"{src.name!r} has no feature columns besides the target {target_col!r}")
    numeric = frame[features].apply(pd.to_numeric, errors="coerce")
    # Not numeric: a value that is there in the file but is no number.
    bad = [c for c in features if (numeric[c].isna() & frame[c].notna()).any()]
    if bad:
        examples = ", ".join(
            f"{c} (e.g. {frame[c][numeric[c].isna() & frame[c].notna()].iloc[0]!r})"
            for c in bad[:4]
        )
        raise DataError(
            f"{src.name!r}: feature columns must be numbers; not numeric: {examples}. Encode "
            "them as numbers, or leave them out (ignore=[...], the app's 'Ignore columns')"
        )
    empty = numeric.isna().sum()
    if empty.any():
        where = ", ".join(f"{c} ({n})" for c, n in empty[empty > 0].items())
        raise DataError(f"{src.name!r} has empty or missing values in: {where}")
    values = numeric.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{src.name!r} has infinite values in its features")
    inputs = torch.from_numpy(values.astype(np.float32))
    if target_col is None:
        targets, names, label_map, target_notes = _targets(None, src.name, "", class_names)
    else:
        column = frame[target_col]
        if column.isna().any():
            rows = [int(i) + 2 for i in np.flatnonzero(column.isna().to_numpy())[:5]]
            raise DataError(
                f"{src.name!r}: the target column {target_col!r} is empty on line(s) "
                f"{', '.join(map(str, rows))}"
            )
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            raw = column.to_numpy()
            targets, names, label_map, target_notes = _targets(
                raw, src.name, target_col, class_names
            )
        else:
            labels = [str(v) for v in column.tolist()]
            targets, names, label_map, target_notes = _categorical(
                labels, src.name, target_col, class_names
            )
    info = DataInfo(
        source=src.name,
        format="csv",
        input_kind="tabular",
        n=len(inputs),
        n_total=len(inputs),
        class_names=tuple(names),
        feature_names=tuple(features),
        target_name=target_col or "",
        label_map=label_map,
        notes=tuple(notes + target_notes),
    )
    return LoadedData(inputs=inputs, targets=targets, info=info)


def _target_column(columns: list[str], target: str | None, source: str) -> str | None:
    if target == "":
        return None
    if target is not None:
        if target not in columns:
            raise DataError(
                f"{source!r} has no column {target!r}; its columns are {_few(columns, 12)}"
            )
        return target
    lower = {c.lower(): c for c in columns}
    return next((lower[n] for n in TARGET_NAMES if n in lower), None)


def csv_columns(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> list[str]:
    """The header of a CSV file (for choosing the target column)."""
    src = as_source(source, name=name, what="data file")
    text = _decode(src.head(1 << 16), src.name, strict=False) or ""
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if src.suffix == ".tsv" else (_delimiter(text) or ",")
    return next(csv.reader([first], delimiter=delimiter), [])


# ---- a zip of image folders --------------------------------------------------------------------


def _read_images(
    src: Source,
    image_size: tuple[int, int] | int | None,
    channels: int | None,
    mean: Sequence[float] | float | None,
    std: Sequence[float] | float | None,
    class_names: Sequence[str] | None,
    limits: Limits,
) -> LoadedData:
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError("reading images needs Pillow: pip install pillow") from None
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    if size is not None and (len(size) != 2 or min(size) < 1 or max(size) > 4096):
        raise DataError(f"image size must be (height, width) within 1..4096, got {image_size}")
    with SafeZip(src, limits=limits, what="image archive") as archive:
        paths = [
            n
            for n in archive.names
            if n.lower().endswith(IMAGE_SUFFIXES)
            and not n.startswith("__MACOSX/")
            and not any(part.startswith(".") for part in n.split("/"))
        ]
        skipped = len(archive.names) - len(paths)
        if not paths:
            raise DataError(f"{src.name!r} holds no images ({', '.join(IMAGE_SUFFIXES[:5])}, ...)")
        relative = _strip_common_folder(sorted(paths))
        labelled = {len(r.split("/")) >= 2 for r in relative.values()}
        if labelled == {True, False}:
            top = next(p for p, r in relative.items() if "/" not in r)
            raise DataError(
                f"{src.name!r} mixes images in class folders with images outside any folder "
                f"(e.g. {top!r}); expected one sub-folder per class"
            )
        has_classes = labelled == {True}
        folders = sorted({r.split("/")[0] for r in relative.values()}) if has_classes else []
        order = _class_order(folders, class_names, src.name)
        decoded = []
        pixels_so_far = 0
        for path in sorted(relative, key=lambda p: (relative[p].split("/")[0], relative[p])):
            image = _open_image(Image, archive.read(path), path, limits, pixels_so_far)
            pixels_so_far += image.width * image.height
            decoded.append((path, image))
    modes = {image.mode for _, image in decoded}
    gray = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
    channels = channels or (1 if modes <= gray else 3)
    if size is None:
        sizes = Counter(image.size for _, image in decoded)
        if len(sizes) > 1:
            (common, n_common), (other, _) = sizes.most_common(2)
            example = next(p for p, image in decoded if image.size == other)
            raise DataError(
                f"the images in {src.name!r} have different sizes ({common[1]}×{common[0]} in "
                f"{n_common} files, {other[1]}×{other[0]} in {example!r}, ...); set an image "
                "size to resize them all"
            )
        width, height = next(iter(sizes))
        size = (height, width)
    means = _per_channel(mean, channels, 0.0, "mean")
    stds = _per_channel(std, channels, 1.0, "std")
    if any(s <= 0 for s in stds):
        raise DataError(f"std must be positive, got {stds}")
    if len(decoded) * channels * size[0] * size[1] > limits.max_elements:
        raise SizeLimitError(
            f"{len(decoded):,} images of {channels}×{size[0]}×{size[1]} are "
            f"{len(decoded) * channels * size[0] * size[1]:,} values, over the "
            f"{limits.max_elements:,} limit: choose a smaller image size"
        )
    pixels = np.empty((len(decoded), channels, size[0], size[1]), dtype=np.float64)
    for i, (_path, image) in enumerate(decoded):
        pixels[i] = _pixels(Image, image, channels, size)
    # In float64, then float32: values such as k/16 come out exactly.
    pixels = (pixels - np.array(means)[:, None, None]) / np.array(stds)[:, None, None]
    inputs = torch.from_numpy(pixels.astype(np.float32))
    notes = [
        f"{len(decoded):,} images, {channels} channel{'s' if channels > 1 else ''}, "
        f"{size[0]}×{size[1]}, normalised with mean {_fmt(means)} and std {_fmt(stds)}"
    ]
    if skipped:
        notes.append(f"skipped {skipped} non-image or hidden file(s)")
    targets = None
    label_map: tuple[tuple[str, int], ...] = ()
    if has_classes:
        index = {name: i for i, name in enumerate(order)}
        targets = torch.tensor(
            [index[relative[p].split("/")[0]] for p, _ in decoded], dtype=torch.int64
        )
        label_map = tuple(index.items())
        if any(name != str(i) for name, i in label_map):  # "0".."9" need no mapping shown
            notes.append(
                "classes (folder → index): " + ", ".join(f"{n} → {i}" for n, i in label_map)
            )
    else:
        notes.append("no class folders: label-free (the pruned model is compared with the dense)")
    info = DataInfo(
        source=src.name,
        format="images",
        input_kind="image",
        n=len(inputs),
        n_total=len(inputs),
        class_names=tuple(order),
        label_map=label_map,
        notes=tuple(notes),
        image_mean=tuple(means),
        image_std=tuple(stds),
    )
    return LoadedData(inputs=inputs, targets=targets, info=info)


def _strip_common_folder(paths: list[str]) -> dict[str, str]:
    """Paths relative to a single wrapping folder (a zip of `digits/0/a.png, ...`), if any."""
    relative = {p: p for p in paths}
    while True:
        parts = [r.split("/") for r in relative.values()]
        firsts = {p[0] for p in parts}
        if len(firsts) == 1 and all(len(p) >= 3 for p in parts):
            relative = {k: v.split("/", 1)[1] for k, v in relative.items()}
        else:
            return relative


def _class_order(folders: list[str], class_names: Sequence[str] | None, source: str) -> list[str]:
    if not class_names:
        return folders
    order = [str(c) for c in class_names]
    unknown = [f for f in folders if f not in order]
    if unknown:
        raise DataError(
            f"{source!r} has class folders that are not among the given classes "
            f"({', '.join(order)}): {', '.join(unknown[:6])}"
        )
    return order


def _open_image(
    image_module: Any, data: bytes, path: str, limits: Limits, pixels_so_far: int = 0
) -> Any:
    """Open and decode one image, refused from its header if it is over a pixel cap."""
    try:
        image = image_module.open(io.BytesIO(data))
        width, height = image.size
        if width * height > limits.max_image_pixels:
            raise SizeLimitError(
                f"image {path!r} is {width}×{height} pixels, over the "
                f"{limits.max_image_pixels:,}-pixel limit (a decompression bomb?)"
            )
        if pixels_so_far + width * height > limits.max_total_pixels:
            raise SizeLimitError(
                f"the images up to {path!r} hold {pixels_so_far + width * height:,} pixels in "
                f"all, over the {limits.max_total_pixels:,}-pixel limit for one archive"
            )
        image.load()
    except SizeLimitError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad files
        raise FormatError(
            f"image {path!r} cannot be decoded (truncated or corrupt?): {error}"
        ) from None
    return image


def _pixels(image_module: Any, image: Any, channels: int, size: tuple[int, int]) -> np.ndarray:
    """(channels, height, width) float64 pixels scaled to [0, 1]."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image, scale = image.convert("F"), 65535.0
    elif image.mode == "F":
        scale = 1.0
    else:
        if image.mode in ("P", "PA", "LA", "RGBA"):  # transparency composited on black
            image = image.convert("RGBA" if channels == 3 else "LA")
        image, scale = image.convert("L" if channels == 1 else "RGB"), 255.0
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), image_module.BILINEAR)
    array = np.asarray(image, dtype=np.float64) / scale
    if array.ndim == 2:  # (height, width): one channel, repeated if RGB was asked for
        return np.repeat(array[None], channels, axis=0)
    return array.transpose(2, 0, 1)


def _per_channel(
    value: Sequence[float] | float | None, channels: int, default: float, what: str
) -> list[float]:
    if value is None:
        return [default] * channels
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise DataError(f"{what} has {len(values)} values for {channels}-channel images")
    return values


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


PREVIEW_SIDE = 160  # pixels: a preview is a thumbnail, whatever the images' size


def preview_images(data: LoadedData, n: int = 8) -> list[tuple[np.ndarray, str]]:
    """A few thumbnails, (height, width, 3) uint8, with their class, normalisation undone."""
    if data.info.format != "images" and data.info.input_kind != "image":
        return []
    inputs = data.inputs
    if inputs.dim() != 4 or inputs.shape[1] not in (1, 3):
        return []
    mean = np.array(data.info.image_mean or [0.0] * inputs.shape[1])[:, None, None]
    std = np.array(data.info.image_std or [1.0] * inputs.shape[1])[:, None, None]
    picks = _spread(data.targets, min(n, len(inputs)))
    step = -(-max(inputs.shape[2:]) // PREVIEW_SIDE)  # ceil: every step-th pixel
    out = []
    for i in picks:
        pixels = inputs[i, :, ::step, ::step].double().numpy() * std + mean
        if inputs.shape[1] == 1:
            pixels = np.repeat(pixels, 3, axis=0)
        image = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
        label = ""
        if data.targets is not None:
            k = int(data.targets[i])
            names = data.info.class_names
            label = names[k] if k < len(names) else str(k)
        out.append((image, label))
    return out


def _spread(targets: torch.Tensor | None, n: int) -> list[int]:
    """n sample indices, one class after another so a preview shows every class."""
    if targets is None or targets.is_floating_point():
        return list(range(n))
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets.tolist()):
        by_class.setdefault(int(t), []).append(i)
    picks: list[int] = []
    queues = [iter(v) for _, v in sorted(by_class.items())]
    while len(picks) < n and queues:
        for queue in list(queues):
            index = next(queue, None)
            if index is None:
                queues.remove(queue)
            elif len(picks) < n:
                picks.append(index)
    return picks


# ---- text ----------------------------------------------------------------------------------------

_LABEL = re.compile(r"^__label__(\S+)\s+(.*)$")


def byte_tokenizer(max_length: int = 128) -> Callable[[Sequence[str]], torch.Tensor]:
    """UTF-8 bytes + 1 as token ids, padded with 0 and cut to max_length."""

    def tokenize(texts: Sequence[str]) -> torch.Tensor:
        ids = torch.zeros(len(texts), max_length, dtype=torch.int64)
        for i, text in enumerate(texts):
            encoded = list(text.encode("utf-8")[:max_length])
            ids[i, : len(encoded)] = torch.tensor(encoded, dtype=torch.int64) + 1
        return ids

    return tokenize


def _read_text(
    src: Source,
    tokenizer: Callable[[Sequence[str]], torch.Tensor] | None,
    max_length: int,
    class_names: Sequence[str] | None,
) -> LoadedData:
    text = _decode(src.read(), src.name)
    assert text is not None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"the text file {src.name!r} has no non-empty lines")
    matches = [_LABEL.match(line) for line in lines]
    labelled = [m is not None for m in matches]
    if any(labelled) and not all(labelled):
        first = labelled.index(False) if labelled[0] else labelled.index(True)
        raise DataError(
            f"{src.name!r}: some lines start with __label__<class> and some do not (e.g. line "
            f"{first + 1}); label every line or none"
        )
    notes: list[str] = []
    targets = None
    names = list(class_names or [])
    label_map: tuple[tuple[str, int], ...] = ()
    if all(labelled):
        texts = [m.group(2) for m in matches if m is not None]
        labels = [m.group(1) for m in matches if m is not None]
        targets, names, label_map, notes = _categorical(labels, src.name, "__label__", class_names)
    else:
        texts = lines
        notes.append(
            "no __label__ prefixes: label-free (the pruned model is compared with the dense)"
        )
    tokenize = tokenizer or byte_tokenizer(max_length)
    try:
        inputs = tokenize(texts)
    except Exception as error:  # noqa: BLE001 - the tokenizer is the caller's
        raise DataError(f"tokenizing {src.name!r} failed: {error}") from None
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or len(inputs) != len(texts):
        raise DataError(
            f"the tokenizer must return an (N, L) tensor for N lines; got "
            f"{getattr(inputs, 'shape', type(inputs).__name__)}"
        )
    if tokenizer is None:
        notes.append(f"tokenized as UTF-8 bytes (+1, 0 = padding), {max_length} tokens per line")
    info = DataInfo(
        source=src.name,
        format="text",
        input_kind="text",
        n=len(inputs),
        n_total=len(inputs),
        class_names=tuple(names),
        target_name="__label__" if targets is not None else "",
        label_map=label_map,
        notes=tuple(notes),
        examples=tuple(texts[:5]),
    )
    return LoadedData(inputs=inputs, targets=targets, info=info)


# ---- split and subsample ---------------------------------------------------------------------


def _stratified(targets: torch.Tensor | None, n: int, k: int, seed: int) -> torch.Tensor:
    """k of n indices, in order, chosen with a seed; in proportion to each class when labelled."""
    generator = torch.Generator().manual_seed(seed)
    if targets is None or targets.is_floating_point():
        return torch.randperm(n, generator=generator)[:k].sort().values
    classes, counts = torch.unique(targets, return_counts=True)
    # Largest-remainder allocation: each class gets its share of k, rounded to sum to k.
    exact = counts.double() * k / n
    quota = exact.floor().long()
    remainder = k - int(quota.sum())
    order = torch.argsort(exact - quota.double(), descending=True, stable=True)
    quota[order[:remainder]] += 1
    chosen = []
    for c, q in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(targets == c).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:q]])
    return torch.cat(chosen).sort().values


def _subsample(data: LoadedData, k: int, seed: int) -> LoadedData:
    n = len(data.inputs)
    keep = _stratified(data.targets, n, k, seed)
    note = f"subsampled {k:,} of {n:,} validation samples (seed {seed}" + (
        ", stratified by class)" if data.targets is not None else ")"
    )
    return replace(
        data,
        inputs=data.inputs[keep],
        targets=None if data.targets is None else data.targets[keep],
        info=replace(data.info, n=k, notes=(*data.info.notes, note)),
    )


def _split(data: LoadedData, fraction: float, seed: int) -> LoadedData:
    if data.train is not None:
        note = "the file has its own train/validation split: val_fraction was not applied"
        return replace(data, info=replace(data.info, notes=(*data.info.notes, note)))
    n = len(data.inputs)
    k = max(1, round(n * fraction))
    if k >= n:
        raise DataError(
            f"a validation share of {fraction:g} of {n} samples leaves no training data"
        )
    val = _stratified(data.targets, n, k, seed)
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    rest = torch.nonzero(mask).flatten()
    targets = data.targets
    note = f"seeded split (seed {seed}): {k:,} validation, {n - k:,} training samples"
    return replace(
        data,
        inputs=data.inputs[val],
        targets=None if targets is None else targets[val],
        train=(data.inputs[rest], None if targets is None else targets[rest]),
        info=replace(data.info, n=k, notes=(*data.info.notes, note)),
    )


def _few(items: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


# ---- the registry: per-format options --------------------------------------------------------


@dataclass(frozen=True)
class ArrayOptions:
    """Tensors, .npz, .npy and safetensors data."""

    target: str | None = None
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class CsvOptions:
    target: str | None = None
    ignore: Sequence[str] = ()
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class ImageOptions:
    size: tuple[int, int] | int | None = None  # (height, width); None: the images' own
    channels: int | None = None  # None: grayscale when every image is
    mean: Sequence[float] | float | None = None
    std: Sequence[float] | float | None = None
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class TextOptions:
    tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None  # None: byte_tokenizer
    max_length: int = 128
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class _Arrays:
    name: str
    label: str

    def sniff(self, head: bytes) -> bool:
        return False  # the built-in detector decides, in its fixed order

    def load(self, src: Source, options: ArrayOptions) -> LoadedData:
        arrays = _read_arrays(src, self.name, options.limits)
        return _from_arrays(arrays, src.name, self.name, options.target, options.class_names)


def _load_csv(src: Source, o: CsvOptions) -> LoadedData:
    return _read_csv(src, o.target, o.ignore, o.class_names, o.limits)


def _load_images(src: Source, o: ImageOptions) -> LoadedData:
    return _read_images(src, o.size, o.channels, o.mean, o.std, o.class_names, o.limits)


def _load_text(src: Source, o: TextOptions) -> LoadedData:
    return _read_text(src, o.tokenizer, o.max_length, o.class_names)


#: Data formats by name; `register_data_format` adds one.
DATA_REGISTRY: Registry[Format[LoadedData]] = Registry()
_OPTIONS: dict[str, type] = {}
for _name in ("tensors", "npz", "npy", "safetensors"):
    DATA_REGISTRY.register(_Arrays(_name, DATA_FORMATS[_name]), sniffed=False)
    _OPTIONS[_name] = ArrayOptions
for _name, _loader, _type in (
    ("csv", _load_csv, CsvOptions),
    ("images", _load_images, ImageOptions),
    ("text", _load_text, TextOptions),
):
    DATA_REGISTRY.register(Builtin(_name, DATA_FORMATS[_name], _loader), sniffed=False)
    _OPTIONS[_name] = _type


def register_data_format(
    fmt: Format[LoadedData], options: type | None = None
) -> Format[LoadedData]:
    """Add a data format: sniffed before the built-in ones, loaded by its own `load`."""
    DATA_FORMATS[fmt.name] = fmt.label
    if options is not None:
        _OPTIONS[fmt.name] = options
    return DATA_REGISTRY.register(fmt)


def _options_for(fmt: Format[LoadedData], keywords: dict[str, Any], limits: Limits) -> Any:
    """The format's options from load_data's keywords; each takes the fields it has."""
    cls = _OPTIONS.get(fmt.name)
    if cls is None:
        return None
    keywords = {**keywords, "size": keywords["image_size"], "limits": limits}
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in keywords.items() if k in names})
