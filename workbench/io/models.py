"""Load a model people bring, in the formats they actually have, without running hidden code.

One module per format under `io/formats/` (export, torchscript, weights, huggingface, pickled);
here, what every load shares: the format told by content (zip members, the safetensors header,
pickle opcodes), not only by the file's extension, by walking `MODEL_FORMATS` in order; then
the format's own `load` with its own options; then eval mode and the notes.
"""

from __future__ import annotations

import os
from dataclasses import replace

from workbench.io.formats.base import Format, Head, Registry
from workbench.io.formats.export import ExportFormat, ExportOptions
from workbench.io.formats.huggingface import (
    HuggingFaceClassifier,
    HuggingFaceFormat,
    HuggingFaceOptions,
)
from workbench.io.formats.loaded import FORMATS, WEIGHT_FORMATS, LoadedModel, ModelOptions
from workbench.io.formats.pickled import PickleFormat, PickleOptions
from workbench.io.formats.torchscript import TorchScriptFormat, TorchScriptOptions
from workbench.io.formats.weights import (
    Architecture,
    KeyReport,
    SafetensorsFormat,
    WeightsOptions,
    build_architecture,
    fit_state_dict,
    load_factory,
)
from workbench.io.safety import (
    DEFAULT_LIMITS,
    FormatError,
    Limits,
    LoadError,
    Source,
    UnsafeFileError,
    as_source,
)

__all__ = [
    "FORMATS",
    "MODEL_FORMATS",
    "WEIGHT_FORMATS",
    "ExportOptions",
    "HuggingFaceClassifier",
    "HuggingFaceOptions",
    "KeyReport",
    "LoadedModel",
    "ModelOptions",
    "PickleOptions",
    "TorchScriptOptions",
    "WeightsOptions",
    "build_architecture",
    "detect_format",
    "fit_state_dict",
    "load_factory",
    "load_model",
    "register_model_format",
]

#: Model formats by the name detect_format gives, in sniffing order; `register_model_format`
#: adds one, sniffed before these. The order is part of the security rules: a folder is only
#: ever a Hugging Face folder; safetensors before any zip; of the zips, a torch.export program,
#: then TorchScript, then a torch.save zip (TorchScript and torch.export archives hold a
#: data.pkl too); a bare pickle last.
MODEL_FORMATS: Registry[Format[LoadedModel]] = Registry(
    [HuggingFaceFormat(), SafetensorsFormat(), ExportFormat(), TorchScriptFormat(), PickleFormat()]
)


def register_model_format(fmt: Format[LoadedModel]) -> Format[LoadedModel]:
    """Add a model format: sniffed before the built-in ones, loaded by its own `load` with its
    `Options` (or ModelOptions) built from load_model's keywords."""
    FORMATS[fmt.name] = fmt.label
    return MODEL_FORMATS.register(fmt)


def load_model(
    source: str | os.PathLike[str] | bytes,
    *,
    kind: str | None = None,
    architecture: Architecture | None = None,
    trust_pickle: bool = False,
    strict: bool = True,
    name: str | None = None,
    limits: Limits | None = None,
    max_length: int | None = None,
) -> LoadedModel:
    """Load a model file (or a Hugging Face folder) into a LoadedModel.

    kind: one of FORMATS to insist on a format; by default it is detected from the content.
    architecture: for weight files, `path/to/file.py:factory` (a function or class that builds
    the model with no arguments), a callable, or a module to load the weights into.
    trust_pickle: allow the full unpickler (runs code from the file). Never for uploads you
    did not make yourself.
    strict: missing or unexpected keys are errors (mis-shaped keys always are).
    limits: the caps; by default Limits.from_env().
    max_length: a text model's tokens per text (Hugging Face folders; the folder caps it).
    """
    if kind is not None and kind not in FORMATS:
        raise LoadError(f"unknown model format {kind!r}; expected one of {', '.join(FORMATS)}")
    limits = limits or Limits.from_env()
    src = as_source(source, name=name, limits=limits, what="model file")
    detected = detect_format(src, limits=limits)
    notes: list[str] = []
    if (
        kind is not None
        and kind != detected
        and not (kind in ("state_dict", "pickle") and detected == "torch")
    ):
        raise FormatError(
            f"{src.name!r} was expected to be a {FORMATS[kind]}, but its content is a "
            f"{FORMATS.get(detected, 'PyTorch pickle file')}"
        )
    hint = _EXTENSION_HINTS.get(src.suffix)
    if hint and hint != detected and not (hint == "torch" and detected == "torchscript"):
        notes.append(
            f"named {src.suffix} but the content is a {FORMATS.get(detected, 'PyTorch file')}; "
            "read by content"
        )
    keywords = {
        "architecture": architecture,
        "trust_pickle": trust_pickle,
        "strict": strict,
        "limits": limits,
        "max_length": max_length,
    }
    options = MODEL_FORMATS.options(detected, keywords) or ModelOptions(**keywords)
    loaded = MODEL_FORMATS[detected].load(src, options)
    if architecture is not None and loaded.format not in WEIGHT_FORMATS:
        notes.append(f"the architecture was not needed: a {loaded.format_label} carries its own")
    if loaded.format != "export":  # an exported program keeps the mode it was exported in
        loaded.model.eval()
    return replace(loaded, notes=(*notes, *loaded.notes), origin=src)


# ---- format detection ----------------------------------------------------------------------------

_EXTENSION_HINTS = {
    ".pt2": "export",
    ".safetensors": "safetensors",
    ".pt": "torch",
    ".pth": "torch",
    ".ckpt": "torch",
    ".bin": "torch",
    ".pkl": "torch",
}
# Members that are compiled code (an AOTInductor package): never loaded, whatever claims them.
_COMPILED = (".so", ".dll", ".dylib", ".cpp", ".cubin")


def detect_format(src: Source, *, limits: Limits = DEFAULT_LIMITS) -> str:
    """The name of the first format in MODEL_FORMATS that claims the file.

    A zip is checked by SafeZip, and refused if it holds compiled code, before any format
    sniffs it.
    """
    head = Head.of(src, limits=limits, what="model archive")
    if head.members is not None and any(n.endswith(_COMPILED) for n in head.members):
        raise UnsafeFileError(
            f"{src.name!r} holds compiled code (an AOTInductor package?); only "
            "torch.export.save programs, TorchScript and weights are loaded"
        )
    found = MODEL_FORMATS.sniff(head)
    if found is not None:
        return found.name
    if head.folder is not None:
        listed = ", ".join(sorted(p.name for p in head.folder.iterdir())[:8]) or "nothing"
        raise FormatError(
            f"the folder {src.name!r} is not a Hugging Face model folder: it has no "
            f"config.json (found {listed})"
        )
    if head.members is not None:
        names = head.members
        listed = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
        raise FormatError(
            f"{src.name!r} is a zip archive but not a PyTorch one (torch.export, "
            f"TorchScript or torch.save): it holds {listed or 'nothing'}"
        )
    if head[:1] == b"{" or head[:4] in (b"\x7fELF", b"MZ\x90\x00"):
        what = "JSON text" if head[:1] == b"{" else "a compiled binary"
    elif _is_text(head):
        what = f"text starting {head[:24].decode('utf-8', 'replace')!r}"
    else:
        what = f"bytes {head[:8].hex(' ')}"
    raise FormatError(
        f"{src.name!r} is not a model file we read: expected a torch.export program (.pt2), a "
        f"TorchScript file, safetensors weights or a PyTorch state dict; found {what}"
    )


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)
