"""A zip of image folders: one sub-folder per class (or none: label-free), decoded under caps."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from workbench.io.formats.base import Head
from workbench.io.formats.loaded import DataFormat, LoadedData
from workbench.io.formats.targets import class_order
from workbench.io.safety import (
    DEFAULT_LIMITS,
    DataError,
    FormatError,
    Limits,
    MissingDependencyError,
    SafeZip,
    SizeLimitError,
    Source,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm",
                  ".pgm", ".pbm")  # fmt: skip
#: Common normalisations for images: (mean, std) per channel, after scaling pixels to [0, 1].
NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "none": ((0.0,), (1.0,)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "[-1, 1]": ((0.5,), (0.5,)),
}


@dataclass(frozen=True)
class ImageOptions:
    size: tuple[int, int] | int | None = None  # (height, width); None: the images' own
    channels: int | None = None  # None: grayscale when every image is
    mean: Sequence[float] | float | None = None
    std: Sequence[float] | float | None = None
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


class ImageFormat(DataFormat, name="images", options=ImageOptions):
    """A zip with images in it (a torch.save zip, also a zip, is sniffed before)."""

    def load(self, src: Source, o: ImageOptions) -> LoadedData:
        return _read_images(src, o.size, o.channels, o.mean, o.std, o.class_names, o.limits)

    def sniff(self, head: Head) -> bool:
        return any(n.lower().endswith(IMAGE_SUFFIXES) for n in head.members or ())


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
        order = class_order(folders, class_names, f"{src.name!r} has class folders")
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
    return LoadedData.of(
        inputs,
        targets,
        src,
        "images",
        "image",
        class_names=tuple(order),
        label_map=label_map,
        notes=tuple(notes),
        image_mean=tuple(means),
        image_std=tuple(stds),
    )


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
