"""What a format's `load` returns: `LoadedModel` and `LoadedData`, and how the app names formats."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from workbench.io.safety import DEFAULT_LIMITS, Limits, Source

#: Model formats (a LoadedModel's `format`) and how the app and the CLI name them.
FORMATS: dict[str, str] = {
    "export": "torch.export program (.pt2)",
    "torchscript": "TorchScript",
    "safetensors": "safetensors weights",
    "state_dict": "PyTorch state dict",
    "huggingface": "Hugging Face folder",
    "pickle": "pickled whole model",
}
#: Formats that hold weights only: they need the architecture as `file.py:factory`.
WEIGHT_FORMATS = ("safetensors", "state_dict")

#: Data formats (a DataInfo's `format`) and how the app names them.
DATA_FORMATS = {
    "tensors": "PyTorch tensors (.pt)",
    "npz": "NumPy arrays (.npz)",
    "npy": "a NumPy array (.npy)",
    "safetensors": "safetensors tensors",
    "csv": "CSV table",
    "images": "zip of image folders",
    "text": "text lines",
}


class _Builtin:
    """A built-in format class: `class X(ModelFormat, name="x", options=XOptions)`; its label
    is the app's name for it (FORMATS or DATA_FORMATS) unless the class sets one."""

    _labels: ClassVar[dict[str, str]]
    name: ClassVar[str]
    label: ClassVar[str]
    Options: ClassVar[type]

    def __init_subclass__(cls, *, name: str = "", options: Any = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if name:
            cls.name, cls.Options = name, options
            cls.label = cls.__dict__.get("label") or cls._labels[name]


class ModelFormat(_Builtin):
    _labels = FORMATS


class DataFormat(_Builtin):
    _labels = DATA_FORMATS


@dataclass(frozen=True)
class ModelOptions:
    """Every model keyword: what a registered model format without its own `Options` gets."""

    architecture: Any = None  # weight formats: `file.py:factory`, a callable or a module
    trust_pickle: bool = False  # the full unpickler runs code: never for uploads
    strict: bool = True  # missing or unexpected keys are errors
    limits: Limits = DEFAULT_LIMITS
    max_length: int | None = None  # a text model's tokens per text


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model in eval mode, and a report of what was loaded."""

    model: nn.Module
    format: str  # a key of FORMATS
    source: str  # the file's name
    params: int
    missing_keys: tuple[str, ...] = ()  # the architecture has them, the weights do not
    unexpected_keys: tuple[str, ...] = ()  # the weights have them, the architecture does not
    # (key, shape the architecture expects, shape in the file)
    mismatched_keys: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    # What one sample looks like, when the file says (a torch.export signature); None = free.
    input_shape: tuple[int | None, ...] | None = None
    input_dtype: torch.dtype | None = None
    fixed_batch: int | None = None  # a program exported for exactly this batch size
    input_kind: str | None = None  # "text" for a Hugging Face text model
    class_names: tuple[str, ...] = ()  # the model's own class order (Hugging Face id2label)
    # For text models: list of strings -> (N, L) token ids, as the model was trained.
    tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = field(default=None, repr=False)
    # The file it came from, so a first forward pass can run it again in a child process.
    origin: Source | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, model: nn.Module, format: str, src: Source, **facts: Any) -> LoadedModel:
        """A model loaded from `src`, its parameters counted."""
        params = sum(p.numel() for p in model.parameters())
        return cls(model=model, format=format, source=src.name, params=params, **facts)

    @property
    def format_label(self) -> str:
        return FORMATS[self.format]

    def summary(self) -> list[str]:
        """One line per fact, for the CLI and the app."""
        lines = [f"{self.source}: {self.format_label}, {self.params:,} parameters"]
        if self.input_shape is not None:
            shape = "×".join("?" if d is None else str(d) for d in self.input_shape)
            dtype = str(self.input_dtype).removeprefix("torch.") if self.input_dtype else "?"
            lines.append(f"input per sample: {shape} ({dtype})")
        if self.fixed_batch is not None:
            lines.append(f"exported for batches of exactly {self.fixed_batch}")
        lines += self.notes
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


@dataclass(frozen=True)
class DataInfo:
    """What the data is: shown to the user, and handed to ModelInfo."""

    source: str
    format: str  # a key of DATA_FORMATS
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

    @classmethod
    def of(
        cls,
        inputs: torch.Tensor,
        targets: torch.Tensor | None,
        src: Source | str,
        format: str,
        input_kind: str,
        train: tuple[torch.Tensor, torch.Tensor | None] | None = None,
        **facts: Any,
    ) -> LoadedData:
        """Data read from `src`: every input is a validation sample, `train` the rest."""
        n = len(inputs)
        info = DataInfo(
            source=src if isinstance(src, str) else src.name,
            format=format,
            input_kind=input_kind,
            n=n,
            n_total=n + (len(train[0]) if train else 0),
            **facts,
        )
        return cls(inputs=inputs, targets=targets, info=info, train=train)

    @property
    def labelled(self) -> bool:
        return self.targets is not None

    @property
    def val(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(inputs, targets) for `Workbench(model, data.val)`."""
        return self.inputs, self.targets
