"""Weights without code: safetensors, or a state dict read with weights_only=True, loaded into
the architecture people give as `path/to/file.py:factory` (their own code, from a local path)."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.io.formats.base import Head, few, first_line, is_safetensors
from workbench.io.formats.loaded import LoadedModel, ModelFormat
from workbench.io.safety import ArchitectureError, FormatError, Source

Architecture = str | Callable[[], nn.Module] | nn.Module


@dataclass(frozen=True)
class WeightsOptions:
    architecture: Architecture | None = None  # `file.py:factory`, a callable or a module
    strict: bool = True  # missing or unexpected keys are errors (mis-shaped keys always are)


class SafetensorsFormat(ModelFormat, name="safetensors", options=WeightsOptions):
    """safetensors weights: an 8-byte header length, then the JSON header."""

    def load(self, src: Source, options: WeightsOptions) -> LoadedModel:
        from safetensors.torch import load, load_file

        try:
            state = load_file(str(src.path)) if src.path is not None else load(src.read())
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise FormatError(
                f"{src.name!r} is not a valid safetensors file (truncated or corrupt?): "
                f"{first_line(error)}"
            ) from None
        return load_weights(src, self.name, state, options)

    def sniff(self, head: Head) -> bool:
        return is_safetensors(head, head.size)


_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.", "model.")


def load_weights(src: Source, fmt: str, obj: Any, options: WeightsOptions) -> LoadedModel:
    """A state dict (or a checkpoint holding one) loaded into the given architecture."""
    state, notes = _as_state_dict(obj, src.name)
    if options.architecture is None:
        raise ArchitectureError(
            f"{src.name!r} holds weights only ({len(state):,} tensors, "
            f"{sum(t.numel() for t in state.values()):,} values): give the architecture as "
            "path/to/file.py:factory, a function or class that builds the model"
        )
    model, arch_name = build_architecture(options.architecture)
    report = fit_state_dict(
        model, state, strict=options.strict, source=src.name, architecture=arch_name
    )
    return LoadedModel.of(
        model,
        fmt,
        src,
        missing_keys=report.missing,
        unexpected_keys=report.unexpected,
        mismatched_keys=report.mismatched,
        notes=(*notes, *report.notes, f"architecture: {arch_name}"),
        warnings=report.warnings,
    )


def _as_state_dict(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    notes = []
    if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and any(
                isinstance(v, torch.Tensor) for v in inner.values()
            ):
                notes.append(f"weights read from the checkpoint's {key!r} entry")
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise FormatError(
            f"{source!r} holds a {type(obj).__name__}, not a state dict (a mapping from names "
            "to tensors) or a model"
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    others = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not state:
        keys = ", ".join(map(str, list(obj)[:6])) or "nothing"
        raise FormatError(f"{source!r} holds no tensors: a mapping of {keys}")
    if others:
        notes.append(f"ignored {len(others)} non-tensor entries ({few(others)})")
    return state, notes


def build_architecture(architecture: Architecture) -> tuple[nn.Module, str]:
    """The model an architecture spec builds, and a name for it."""
    if isinstance(architecture, nn.Module):
        return architecture, type(architecture).__name__
    if isinstance(architecture, str):
        factory, name = load_factory(architecture)
    elif callable(architecture):
        factory, name = architecture, getattr(architecture, "__name__", repr(architecture))
    else:
        raise ArchitectureError(
            f"architecture must be 'path/to/file.py:factory' or a callable, got "
            f"{type(architecture).__name__}"
        )
    try:
        model = factory()
    except Exception as error:  # noqa: BLE001 - the user's own code
        raise ArchitectureError(
            f"calling {name}() raised {type(error).__name__}: {first_line(error)} (the "
            "factory must build the model with no arguments)"
        ) from None
    if not isinstance(model, nn.Module):
        raise ArchitectureError(f"{name}() returned a {type(model).__name__}, not an nn.Module")
    return model, name


def load_factory(spec: str) -> tuple[Callable[[], Any], str]:
    """`path/to/file.py:factory` -> the callable. The file is the user's own, on this machine."""
    path_text, sep, attr = spec.rpartition(":")
    if not sep or not path_text or not attr:
        raise ArchitectureError(
            f"architecture {spec!r} should be path/to/file.py:factory (a file, a colon, and "
            "the name of a function or class in it)"
        )
    path = Path(path_text).expanduser().resolve()
    if path.suffix != ".py":
        raise ArchitectureError(f"architecture file {path_text!r} is not a .py file")
    if not path.is_file():
        raise ArchitectureError(f"architecture file {path_text!r} does not exist")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"_workbench_architecture_{digest}"
    spec_obj = importlib.util.spec_from_file_location(module_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ArchitectureError(f"cannot import {path_text!r}")
    module = importlib.util.module_from_spec(spec_obj)
    # The file may import its neighbours; pickled objects may refer to its module by name.
    sys.path.insert(0, str(path.parent))
    sys.modules[module_name] = module
    try:
        spec_obj.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's own code
        sys.modules.pop(module_name, None)
        raise ArchitectureError(
            f"running {path.name} raised {type(error).__name__}: {first_line(error)}"
        ) from None
    finally:
        if sys.path and sys.path[0] == str(path.parent):
            sys.path.pop(0)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        candidates = [
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(v) or inspect.isclass(v))
            and getattr(v, "__module__", None) == module_name
        ]
        raise ArchitectureError(
            f"{path.name} has no function or class {attr!r}; it defines: "
            f"{', '.join(candidates) or 'none'}"
        )
    return factory, f"{path.name}:{attr}"


@dataclass(frozen=True)
class KeyReport:
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    notes: tuple[str, ...]
    warnings: tuple[str, ...]


def fit_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    source: str = "the weights",
    architecture: str = "the architecture",
) -> KeyReport:
    """Load `state` into `model` and say precisely which keys are missing, extra or mis-shaped."""
    expected = model.state_dict()
    state, notes = _strip_prefix(dict(state), expected)
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        (k, tuple(expected[k].shape), tuple(state[k].shape))
        for k in expected
        if k in state and tuple(expected[k].shape) != tuple(state[k].shape)
    ]
    problems = []
    if mismatched:
        problems.append(
            f"{_count_of(len(mismatched), 'mis-shaped key')} ("
            + "; ".join(
                f"{k}: the architecture expects {_shape(a)}, the file has {_shape(b)}"
                for k, a, b in mismatched[:6]
            )
            + (f"; and {len(mismatched) - 6} more" if len(mismatched) > 6 else "")
            + ")"
        )
    if strict and missing:
        problems.append(f"{_count_of(len(missing), 'missing key')} ({few(missing)})")
    if strict and unexpected:
        problems.append(f"{_count_of(len(unexpected), 'unexpected key')} ({few(unexpected)})")
    if problems:
        raise ArchitectureError(
            f"the weights in {source!r} do not fit {architecture}: " + ", ".join(problems)
        )
    warns = []
    if missing:
        warns.append(f"{_count_of(len(missing), 'key')} kept their initial values: {few(missing)}")
    if unexpected:
        warns.append(
            f"{_count_of(len(unexpected), 'key')} in the file were ignored: {few(unexpected)}"
        )
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if dtypes - {torch.float32}:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        notes.append(f"weights stored as {names}; loaded into the architecture's dtypes")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return KeyReport(
        missing=tuple(missing),
        unexpected=tuple(unexpected),
        mismatched=tuple(mismatched),
        notes=tuple(notes),
        warnings=tuple(warns),
    )


def _strip_prefix(
    state: dict[str, torch.Tensor], expected: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Drop a wrapper's prefix (DataParallel's module., torch.compile's _orig_mod., ...)."""
    if any(k in expected for k in state):
        return state, []
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            stripped = {k.removeprefix(prefix): v for k, v in state.items()}
            if any(k in expected for k in stripped):
                return stripped, [f"removed the prefix {prefix!r} from every key"]
    return state, []


def _shape(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape)) or "a scalar"


def _count_of(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
