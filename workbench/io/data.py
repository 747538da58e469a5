"""Load validation data people bring: tensors, arrays, a CSV, a zip of image folders, text lines.

One module per format under `io/formats/` (arrays, table, images, text); here, what every load
shares: the format told by content by walking `DATA_REGISTRY` in order, the format's own
options built from the keywords, then the seeded split and subsample. Every loader returns
`LoadedData`: inputs, targets (None: label-free, the workbench then compares the pruned model
with the dense one), and what the data is. Nothing is unpickled: .pt files are read with
weights_only=True, .npz with allow_pickle=False, and archives are checked and capped (`safety`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from workbench.io.formats.arrays import NPY, NPZ, SAFETENSORS, TENSORS, ArrayOptions
from workbench.io.formats.base import Format, Head, Registry
from workbench.io.formats.images import (
    IMAGE_SUFFIXES,
    NORMALISATIONS,
    ImageFormat,
    ImageOptions,
    preview_images,
)
from workbench.io.formats.loaded import DATA_FORMATS, DataInfo, LoadedData
from workbench.io.formats.table import TARGET_NAMES, CsvFormat, CsvOptions, csv_columns
from workbench.io.formats.text import TextFormat, TextOptions, byte_tokenizer
from workbench.io.safety import (
    DEFAULT_LIMITS,
    DataError,
    FormatError,
    Limits,
    LoadError,
    Source,
    as_source,
)

__all__ = [
    "DATA_FORMATS",
    "DATA_REGISTRY",
    "IMAGE_SUFFIXES",
    "NORMALISATIONS",
    "TARGET_NAMES",
    "ArrayOptions",
    "CsvOptions",
    "DataInfo",
    "ImageOptions",
    "LoadedData",
    "TextOptions",
    "byte_tokenizer",
    "csv_columns",
    "detect_data_format",
    "load_data",
    "preview_images",
    "register_data_format",
]

#: Data formats by name, in sniffing order; `register_data_format` adds one, sniffed before
#: these. The order is part of the security rules: headers first (.npy, safetensors), an
#: archive of arrays; text named as text (.csv, .tsv, .txt) before the pickle sniff, since a
#: CSV may start with "c", "(" or "]" as a protocol-0 pickle does; then tensors (a torch.save
#: zip, or a pickle: read weights-only), before a zip of images (a torch.save zip is a zip too).
DATA_REGISTRY: Registry[Format[LoadedData]] = Registry(
    [NPY, SAFETENSORS, NPZ, CsvFormat(), TextFormat(), TENSORS, ImageFormat()]
)


def register_data_format(
    fmt: Format[LoadedData], options: type | None = None
) -> Format[LoadedData]:
    """Add a data format: sniffed before the built-in ones, loaded by its own `load` with its
    options (`options`, or `fmt.Options`) built from load_data's keywords."""
    DATA_FORMATS[fmt.name] = fmt.label
    return DATA_REGISTRY.register(fmt, options)


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
    limits: the caps for reading and detecting the file; by default Limits.from_env().
    options: the format's own options (CsvOptions, ImageOptions, ...) instead of the keywords;
    the load then runs under `options.limits`, DEFAULT_LIMITS unless set there (not `limits`
    nor the environment, which still cap reading and detecting the file).
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
    if options is None:
        keywords = {
            "target": target,
            "ignore": ignore,
            "class_names": class_names,
            "size": image_size,
            "channels": channels,
            "mean": mean,
            "std": std,
            "tokenizer": tokenizer,
            "max_length": max_length,
            "limits": limits,
        }
        options = DATA_REGISTRY.options(fmt, keywords)
    data = DATA_REGISTRY[fmt].load(src, options)
    if val_fraction is not None and val_fraction < 1:
        data = _split(data, val_fraction, seed)
    if max_samples is not None and data.info.n > max_samples:
        data = _subsample(data, max_samples, seed)
    return data


def detect_data_format(src: Source, *, limits: Limits = DEFAULT_LIMITS) -> str:
    """The name of the first format in DATA_REGISTRY that claims the file (a zip is checked by
    SafeZip before any format sniffs it)."""
    if src.path is not None and src.path.is_dir():
        raise DataError(f"{src.name!r} is a folder: zip an image folder and give the zip")
    head = Head.of(src, limits=limits, what="data archive")
    found = DATA_REGISTRY.sniff(head)
    if found is not None:
        return found.name
    if head.members is not None:
        raise FormatError(
            f"{src.name!r} is a zip archive with neither images (one sub-folder per class) nor "
            f"arrays: it holds {', '.join(head.members[:6]) or 'nothing'}"
        )
    raise FormatError(
        f"{src.name!r} is not a data file we read: expected .pt/.npz tensors, a CSV, a zip "
        f"of image folders or a text file; found binary bytes {head[:8].hex(' ')}"
    )


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
