"""Load a model people bring, in the formats they actually have, without running hidden code.

- a torch.export program (.pt2): checked before torch.export.load, which would otherwise
  unpickle payloads, evaluate expressions and call whatever the graph names;
- a TorchScript file: run by TorchScript's interpreter, which cannot call Python;
- weights (safetensors, or a state dict read with weights_only=True) plus the architecture as
  `path/to/file.py:factory`, the user's own code from a local path;
- a Hugging Face folder (config.json + safetensors), strictly offline, with the optional extra;
- a whole pickled model, only with trust_pickle=True: unpickling runs code from the file.

The format is told by content (zip members, the safetensors header, pickle opcodes), not only by
the file's extension.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import io
import json
import keyword
import math
import operator
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.io.formats.base import Builtin, Format, ModelOptions, Registry
from workbench.io.safety import (
    DEFAULT_LIMITS,
    EXPORT_ADVICE,
    ArchitectureError,
    FormatError,
    Limits,
    LoadError,
    MissingDependencyError,
    SafeZip,
    Source,
    UnsafeFileError,
    as_source,
    check_expression,
    code_free,
    is_zip,
    looks_like_pickle,
    torch_load,
    unsafe_pickle_message,
    walk_json,
)

#: Formats and how the app and the CLI name them.
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

Architecture = str | Callable[[], nn.Module] | nn.Module


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


def load_model(
    source: str | os.PathLike[str] | bytes,
    *,
    kind: str | None = None,
    architecture: Architecture | None = None,
    trust_pickle: bool = False,
    strict: bool = True,
    name: str | None = None,
    limits: Limits | None = None,
) -> LoadedModel:
    """Load a model file (or a Hugging Face folder) into a LoadedModel.

    kind: one of FORMATS to insist on a format; by default it is detected from the content.
    architecture: for weight files, `path/to/file.py:factory` (a function or class that builds
    the model with no arguments), a callable, or a module to load the weights into.
    trust_pickle: allow the full unpickler (runs code from the file). Never for uploads you
    did not make yourself.
    strict: missing or unexpected keys are errors (mis-shaped keys always are).
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

    loaded = MODEL_FORMATS[detected].load(
        src, ModelOptions(architecture, trust_pickle, strict, limits)
    )
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
_SAFETENSORS_MAX_HEADER = 100 << 20


def detect_format(src: Source, *, limits: Limits = DEFAULT_LIMITS) -> str:
    """ "export", "torchscript", "safetensors", "huggingface" or "torch" (a torch.save pickle)."""
    if src.path is not None and src.path.is_dir():
        if (src.path / "config.json").is_file():
            return "huggingface"
        found = ", ".join(sorted(p.name for p in src.path.iterdir())[:8]) or "nothing"
        raise FormatError(
            f"the folder {src.name!r} is not a Hugging Face model folder: it has no "
            f"config.json (found {found})"
        )
    head = src.head(64)
    added = MODEL_FORMATS.sniff(head)
    if added is not None:
        return added.name
    if _is_safetensors(head, src.size):
        return "safetensors"
    if is_zip(head):
        with SafeZip(src, limits=limits, what="model archive") as archive:
            return _zip_format(archive)
    if looks_like_pickle(head):
        return "torch"
    if head[:1] == b"{" or head[:4] in (b"\x7fELF", b"MZ\x90\x00"):
        found = "JSON text" if head[:1] == b"{" else "a compiled binary"
    elif _is_text(head):
        found = f"text starting {head[:24].decode('utf-8', 'replace')!r}"
    else:
        found = f"bytes {head[:8].hex(' ')}"
    raise FormatError(
        f"{src.name!r} is not a model file we read: expected a torch.export program (.pt2), a "
        f"TorchScript file, safetensors weights or a PyTorch state dict; found {found}"
    )


def _is_safetensors(head: bytes, size: int) -> bool:
    # An 8-byte little-endian header length, then the JSON header itself.
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(size - 8, _SAFETENSORS_MAX_HEADER) and head[8:9] == b"{"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)


def _zip_format(archive: SafeZip) -> str:
    names = archive.names
    if any(n.endswith((".so", ".dll", ".dylib", ".cpp", ".cubin")) for n in names):
        raise UnsafeFileError(
            f"{archive.source.name!r} holds compiled code (an AOTInductor package?); only "
            "torch.export.save programs, TorchScript and weights are loaded"
        )
    if any(n.endswith("archive_format") for n in names) or any(
        re.search(r"(^|/)models/[^/]+\.json$", n) for n in names
    ):
        return "export"
    if any("/code/" in n or n.startswith("code/") for n in names) and any(
        n.endswith("constants.pkl") for n in names
    ):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch"
    listed = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
    raise FormatError(
        f"{archive.source.name!r} is a zip archive but not a PyTorch one (torch.export, "
        f"TorchScript or torch.save): it holds {listed or 'nothing'}"
    )


# ---- torch.export programs -----------------------------------------------------------------------

# Members of a .pt2 archive that are plain text markers.
_PT2_MARKERS = ("archive_format", "archive_version", "version", "byteorder", "serialization_id")
_SAFE_OPERATORS = frozenset(
    [
        "getitem",
        "add",
        "sub",
        "mul",
        "truediv",
        "floordiv",
        "mod",
        "pow",
        "neg",
        "pos",
        "abs",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and_",
        "or_",
        "xor",
        "not_",
        "invert",
        "lshift",
        "rshift",
        "truth",
        "index",
    ]
)
_SYMPY_NAMES = frozenset(
    [
        "Symbol",
        "Integer",
        "Rational",
        "Float",
        "Add",
        "Mul",
        "Pow",
        "Mod",
        "Max",
        "Min",
        "Abs",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "And",
        "Or",
        "Not",
        "floor",
        "ceiling",
        "oo",
        "zoo",
        "nan",
        "true",
        "false",
        "Piecewise",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
        "BooleanAtom",
    ]
)
_GUARD_NAMES = frozenset(
    [
        "L",
        "math",
        "inf",
        "Eq",
        "Ne",
        "Max",
        "Min",
        "Mod",
        "FloorDiv",
        "PythonMod",
        "CleanDiv",
        "CeilDiv",
        "IntTrueDiv",
        "FloatTrueDiv",
        "ToFloat",
        "TruncToInt",
        "TruncToFloat",
        "RoundToInt",
        "RoundDecimal",
        "Abs",
        "sym_max",
        "sym_min",
        "sym_float",
        "sym_int",
        "sym_sqrt",
        "IsNonOverlappingAndDenseIndicator",
        "cast_symbool_to_symint_guardless",
    ]
)
_GUARD_ATTRIBUTES = frozenset(
    [
        "size",
        "stride",
        "storage_offset",
        "dim",
        "numel",
        "floor",
        "ceil",
        "sqrt",
        "trunc",
        "log2",
        "pow",
    ]
)
# Symbol names torch writes (s0, u12, ps3, ...): never a Python builtin, which has no digits.
_SYMBOL = re.compile(r"^[a-z]{1,4}\d{1,9}$")


def _load_export(src: Source, limits: Limits, trust: bool) -> LoadedModel:
    # torch.export.load unpickles payloads (falling back to the full unpickler), evaluates
    # symbolic expressions with sympy (eval), execs guard code and calls any function the graph
    # names. Untrusted, it runs inside `code_free()`, where no unpickler but the weights-only
    # one exists; the archive's expressions, guards and graph targets are also checked against
    # allow-lists, before and after, as a second wall.
    cleaned = None
    with SafeZip(src, limits=limits, what=".pt2 archive") as archive:
        if not trust:
            cleaned = _check_export_archive(archive)
    try:
        with src.open() as original, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if cleaned is None:
                program = torch.export.load(original)
            else:
                # torch reads the checked copy, never the bytes as uploaded.
                with code_free():
                    program = torch.export.load(io.BytesIO(cleaned))
    except LoadError:
        raise
    except Exception as error:  # noqa: BLE001 - torch raises many types on bad archives
        raise FormatError(
            f"{src.name!r} is not a loadable torch.export program (truncated, corrupt, or "
            f"saved by an incompatible PyTorch?): {_first_line(error)}"
        ) from None
    if not trust:
        _check_graph_targets(program.graph_module, src.name)
    user_inputs = list(program.graph_signature.user_inputs)
    if len(user_inputs) != 1:
        raise LoadError(
            f"the program in {src.name!r} takes {len(user_inputs)} inputs "
            f"({', '.join(map(str, user_inputs)) or 'none'}); the workbench feeds one tensor "
            "per batch: export a wrapper that takes one"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if trust:
            module = program.module()
        else:
            with code_free():
                module = program.module()
    placeholder = next(
        n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0]
    )
    value = placeholder.meta.get("val")
    shape = dtype = batch = None
    notes = []
    if isinstance(value, torch.Tensor):
        dims = [d if isinstance(d, int) else None for d in value.shape]
        dtype = value.dtype
        if dims:
            shape, batch = tuple(dims[1:]), dims[0]
            if batch is not None:
                notes.append(
                    f"exported with a fixed batch size of {batch}: the workbench runs batches "
                    f"of {batch} (export with a dynamic batch dimension to avoid this)"
                )
    return LoadedModel(
        model=module,
        format="export",
        source=src.name,
        params=_count(module),
        input_shape=shape,
        input_dtype=dtype,
        fixed_batch=batch,
        notes=tuple(notes),
        warnings=("loaded with trust: the program's contents were not checked",) if trust else (),
    )


def _check_export_archive(archive: SafeZip) -> bytes:
    """The second wall: what torch.export.load would read from an untrusted archive, checked.

    Reads the payload configs exactly where torch does (`data/weights/<model>_weights_config.json`
    under the archive's root folder, likewise for constants), so a decoy JSON elsewhere changes
    nothing; every member that is not a raw tensor payload, a JSON document or a marker must
    load with the weights-only unpickler.

    Returns the archive to load: the same members, with the programs' node metadata (stack
    traces, module stacks: free text that torch.fx pastes into generated code) left out.
    """
    names = archive.names
    root = names[0].split("/", 1)[0] + "/" if names and "/" in names[0] else ""
    documents: dict[str, Any] = {}
    for name in names:
        if name.endswith(".json"):
            try:
                documents[name] = json.loads(archive.read(name))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
                raise FormatError(
                    f"{name!r} in {archive.source.name!r} is not valid JSON (corrupt archive?): "
                    f"{_first_line(error)}"
                ) from None
            _check_export_json(documents[name], name, archive.source.name)
            if re.fullmatch(re.escape(root) + r"models/.+\.json", name):
                _check_export_names(documents[name], name, archive.source.name)
    models = [
        m.group(1) for n in names if (m := re.fullmatch(re.escape(root) + r"models/(.+)\.json", n))
    ]
    raw: set[str] = set()  # payloads torch reads as raw bytes, never unpickled
    read: dict[str, bytes] = {}  # members already read (each counts against the budget once)
    for model in models:
        for folder, kind in (("weights", "weights"), ("constants", "constants")):
            config = documents.get(f"{root}data/{folder}/{model}_{kind}_config.json")
            entries = config.get("config") if isinstance(config, dict) else None
            for entry in (entries or {}).values():
                if not isinstance(entry, dict):
                    raise FormatError(f"the {kind} config of {archive.source.name!r} is malformed")
                path_name = str(entry.get("path_name", ""))
                if path_name.startswith(("custom_obj", "opaque_obj")):
                    raise UnsafeFileError(
                        f"{archive.source.name!r} holds pickled Python objects as constants "
                        f"({path_name}); unpickling runs code, so it was not loaded"
                    )
                if entry.get("use_pickle") is False:
                    raw.add(f"{root}data/{folder}/{path_name}")
    for name in names:
        if name in documents or name in raw or name.rsplit("/", 1)[-1] in _PT2_MARKERS:
            continue
        if name.endswith((".py", ".pyc")):
            raise UnsafeFileError(f"{archive.source.name!r} holds Python code ({name})")
        data = read[name] = archive.read(name)
        if not data:
            continue
        # Sample inputs, pickled weights, legacy payloads: plain tensors or nothing.
        torch_load(
            Source(name=name, size=len(data), data=data),
            trust=False,
            what=f"{name!r} in {archive.source.name!r}",
            advice=EXPORT_ADVICE,
        )
    return _rebuilt(archive, documents, read, root)


def _rebuilt(
    archive: SafeZip, documents: dict[str, Any], read: dict[str, bytes], root: str
) -> bytes:
    """The archive again, its programs without node metadata (free text torch.fx prints)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy:
        for name in archive.names:
            data = read[name] if name in read else b"" if name in documents else archive.read(name)
            if re.fullmatch(re.escape(root) + r"models/.+\.json", name):
                document = documents[name]
                for _key, value, _parent in walk_json(document):
                    if isinstance(value, dict) and isinstance(value.get("metadata"), dict):
                        value["metadata"] = {}
                data = json.dumps(document).encode()
            elif name in documents:
                data = json.dumps(documents[name]).encode()
            copy.writestr(name, data)
    return out.getvalue()


def _check_export_json(document: Any, member: str, archive: str) -> None:
    where = f"{member!r} in {archive!r}"
    for key, value, parent in walk_json(document):
        if key == "expr_str" and isinstance(value, str):
            check_expression(
                value,
                names=lambda n: n in _SYMPY_NAMES or bool(_SYMBOL.match(n)),
                what=f"a symbolic size in {where}",
            )
        elif key == "guards_code" and isinstance(value, list):
            for guard in value:
                check_expression(
                    str(guard),
                    names=lambda n: n in _GUARD_NAMES or bool(_SYMBOL.match(n)),
                    attributes=_GUARD_ATTRIBUTES,
                    subscripts=True,
                    what=f"a guard in {where}",
                )
        elif (
            key == "target"
            and isinstance(value, str)
            and "inputs" in parent
            and not _allowed_target(value)
        ):
            raise UnsafeFileError(
                f"the graph in {where} calls {value!r}: only PyTorch operators "
                "(torch.ops.*) and plain arithmetic are run from an untrusted file"
            )


# A name torch may paste into generated Python: identifiers and dotted paths (module.0.weight).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
# Free text, checked elsewhere or never compiled: expressions and guards (check_expression), node
# metadata (dropped before torch reads the program), the version string.
_FREE_TEXT_KEYS = frozenset({"expr_str", "guards_code", "metadata", "torch_version"})
# A string argument of an operator (an einsum equation, a padding mode): torch.fx writes it as
# repr(), so any one line of printable text is safe there.
_STRING_ARGUMENT = re.compile(r"[ -~]{0,1000}")
_SPEC_KEYS = frozenset({"in_spec", "out_spec"})  # pytree specs: JSON inside a string


def _check_export_names(document: Any, member: str, archive: str) -> None:
    """Every other string of a program is a plain name: torch.fx writes node names, targets and
    argument names into the Python code it compiles, so `x=__import__('os')...` must not pass."""

    def check(value: Any, key: str) -> None:
        if key in _FREE_TEXT_KEYS:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str) or not _SAFE_NAME.fullmatch(k):
                    raise UnsafeFileError(
                        f"the program in {member!r} of {archive!r} has the key {str(k)[:60]!r}, "
                        "which is not a plain name; refused"
                    )
                check(v, k)
        elif isinstance(value, list):
            for item in value:
                check(item, key)
        elif isinstance(value, str):
            if key in _SPEC_KEYS or key == "context":
                try:
                    parsed = json.loads(value)
                except (json.JSONDecodeError, RecursionError):
                    parsed = None
                if parsed is not None or value == "null":
                    check(parsed, "spec")
                    return
            if key == "as_string" and _STRING_ARGUMENT.fullmatch(value):
                return
            if not _SAFE_NAME.fullmatch(value) or keyword.iskeyword(value):
                raise UnsafeFileError(
                    f"the program in {member!r} of {archive!r} names {value[:60]!r} (under "
                    f"{key!r}), which is not a plain name: torch would write it into the code it "
                    "runs; refused"
                )

    check(document, "")


# Operator namespaces a program from a file may call: PyTorch's own tensor maths. Custom
# namespaces load or call code registered by whoever imported it.
_OP_NAMESPACES = frozenset({"aten", "prims"})
# Operators of those namespaces that touch the world outside the tensors: refused.
_SIDE_EFFECT_OPS = frozenset({"from_file", "_nnpack_available", "save", "_print", "print"})


def _allowed_op(namespace: str, name: str) -> bool:
    return namespace in _OP_NAMESPACES and name not in _SIDE_EFFECT_OPS


def _allowed_target(target: str) -> bool:
    if m := re.fullmatch(r"torch\.ops\.([A-Za-z_]\w*)\.([A-Za-z_]\w*)(\.[A-Za-z_]\w*)?", target):
        return _allowed_op(m.group(1), m.group(2))
    if re.fullmatch(r"torch\.ops\.higher_order\.(cond|map|while_loop)", target):
        return True
    if target.startswith("_operator."):
        return target.removeprefix("_operator.") in _SAFE_OPERATORS
    if re.fullmatch(r"math\.[a-z]\w*", target):
        return True
    return bool(re.fullmatch(r"torch\._?sym_[a-z_]+", target))


_SAFE_CALLABLES: frozenset[Any] = frozenset(
    {getattr(operator, n) for n in _SAFE_OPERATORS}
    | {getattr(math, n) for n in dir(math) if callable(getattr(math, n))}
    | {getattr(torch, n) for n in dir(torch) if re.fullmatch(r"_?sym_[a-z_]+", n)}
)


def _check_graph_targets(module: nn.Module, source: str) -> None:
    """Every function a loaded graph calls is a PyTorch operator or plain arithmetic."""
    for sub in module.modules():
        graph = getattr(sub, "graph", None)
        if not isinstance(graph, torch.fx.Graph):
            continue
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            target = node.target
            if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
                namespace, _, name = str(target.name()).partition("::")
                if _allowed_op(namespace, name.split(".")[0]):
                    continue
                raise UnsafeFileError(
                    f"the program in {source!r} calls {target.name()!r}: only PyTorch's tensor "
                    "operators (aten, prims) without side effects run from an untrusted file"
                )
            if isinstance(target, torch._ops.HigherOrderOperator) and target.name() in (
                "cond",
                "map",
                "map_impl",
                "while_loop",
            ):
                continue
            if target in _SAFE_CALLABLES:
                continue
            raise UnsafeFileError(
                f"the program in {source!r} calls {target!r}, which is not a PyTorch operator; "
                "refused (trust the file to run it anyway)"
            )


# ---- TorchScript -----------------------------------------------------------------------------


# TorchScript runs its own code at load (a scripted __setstate__) and may call any registered
# operator: what its code/ may not contain, read before torch.jit.load sees the file.
_TORCHSCRIPT_REFUSED = (
    (re.compile(r"\bdef\s+__setstate__\b"), "a __setstate__ method, which runs when it is loaded"),
    (re.compile(r"\bfrom_file\b"), "a call of torch.from_file, which reads and writes files"),
    (re.compile(r"\bsave\s*\("), "a call that saves to a file"),
    (re.compile(r"\btorch\.classes\b|__torch__\.torch\.classes"), "a custom C++ class"),
    (
        re.compile(r"\bops\.(?!aten\.|prim\.|prims\.)[A-Za-z_]\w*\."),
        "an operator outside PyTorch's own (aten, prim)",
    ),
)


def _check_torchscript(src: Source, limits: Limits) -> None:
    with SafeZip(src, limits=limits, what="TorchScript archive") as archive:
        for name in archive.names:
            if "/code/" not in f"/{name}" or not name.endswith(".py"):
                continue
            text = archive.read(name).decode("utf-8", "replace")
            for pattern, what in _TORCHSCRIPT_REFUSED:
                if pattern.search(text):
                    raise UnsafeFileError(
                        f"the TorchScript file {src.name!r} holds {what} ({name}); refused. "
                        "Export the model with torch.export (.pt2) instead"
                    )


def _load_torchscript(src: Source, limits: Limits = DEFAULT_LIMITS) -> LoadedModel:
    _check_torchscript(src, limits)
    try:
        with src.open() as f, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # noted below instead
            module = torch.jit.load(f, map_location="cpu")
    except Exception as error:  # noqa: BLE001 - TorchScript raises RuntimeError and others
        raise FormatError(
            f"{src.name!r} is not a loadable TorchScript file (truncated or corrupt?): "
            f"{_first_line(error)}"
        ) from None
    return LoadedModel(
        model=module,
        format="torchscript",
        source=src.name,
        params=_count(module),
        notes=(
            "TorchScript runs as a whole: every slider change re-runs the model (exact, just "
            "not incremental); PyTorch deprecates TorchScript, torch.export (.pt2) replaces it",
        ),
    )


# ---- weights + architecture ------------------------------------------------------------------


def _read_safetensors(src: Source) -> dict[str, torch.Tensor]:
    from safetensors.torch import load, load_file

    try:
        return load_file(str(src.path)) if src.path is not None else load(src.read())
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise FormatError(
            f"{src.name!r} is not a valid safetensors file (truncated or corrupt?): "
            f"{_first_line(error)}"
        ) from None


_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.", "model.")


def _load_weights(
    src: Source,
    fmt: str,
    obj: Any,
    architecture: Architecture | None,
    strict: bool,
) -> LoadedModel:
    state, notes = _as_state_dict(obj, src.name)
    if architecture is None:
        raise ArchitectureError(
            f"{src.name!r} holds weights only ({len(state):,} tensors, "
            f"{sum(t.numel() for t in state.values()):,} values): give the architecture as "
            "path/to/file.py:factory, a function or class that builds the model"
        )
    model, arch_name = build_architecture(architecture)
    report = fit_state_dict(model, state, strict=strict, source=src.name, architecture=arch_name)
    return LoadedModel(
        model=model,
        format=fmt,
        source=src.name,
        params=_count(model),
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
        notes.append(f"ignored {len(others)} non-tensor entries ({_few(others)})")
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
            f"calling {name}() raised {type(error).__name__}: {_first_line(error)} (the "
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
            f"running {path.name} raised {type(error).__name__}: {_first_line(error)}"
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
        problems.append(f"{_count_of(len(missing), 'missing key')} ({_few(missing)})")
    if strict and unexpected:
        problems.append(f"{_count_of(len(unexpected), 'unexpected key')} ({_few(unexpected)})")
    if problems:
        raise ArchitectureError(
            f"the weights in {source!r} do not fit {architecture}: " + ", ".join(problems)
        )
    warns = []
    if missing:
        warns.append(f"{_count_of(len(missing), 'key')} kept their initial values: {_few(missing)}")
    if unexpected:
        warns.append(
            f"{_count_of(len(unexpected), 'key')} in the file were ignored: {_few(unexpected)}"
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


# ---- pickled whole models ---------------------------------------------------------------------


def _pickled_model(src: Source, model: nn.Module) -> LoadedModel:
    return LoadedModel(
        model=model,
        format="pickle",
        source=src.name,
        params=_count(model),
        warnings=(
            "unpickled with the full unpickler because you trusted the file: any code in it "
            "has run",
        ),
    )


# ---- Hugging Face ------------------------------------------------------------------------------


def _load_huggingface(src: Source, trust: bool) -> LoadedModel:
    folder = src.path
    assert folder is not None
    # Strictly offline, set before transformers reads its settings; local_files_only below too.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            f"{src.name!r} is a Hugging Face model folder; loading it needs the optional "
            "transformers extra: pip install -r requirements-hf.txt"
        ) from None
    try:
        config_data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormatError(f"config.json in {src.name!r} is not valid JSON: {error}") from None
    if not isinstance(config_data, dict):
        raise FormatError(f"config.json in {src.name!r} is not a JSON object")
    if "auto_map" in config_data:
        raise UnsafeFileError(
            f"{src.name!r} needs its own Python code (config.json has auto_map, i.e. "
            "trust_remote_code); code from a model folder is never run"
        )
    names = {p.name for p in folder.iterdir()}
    safetensors = any(n.endswith(".safetensors") for n in names)
    pickled = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    if not safetensors and not (pickled and trust):
        if pickled:
            raise UnsafeFileError(
                unsafe_pickle_message(f"{src.name!r} (pytorch_model.bin)", scan=None)
            )
        raise FormatError(
            f"{src.name!r} has a config.json but no weights (*.safetensors); found "
            f"{', '.join(sorted(names)[:8])}"
        )
    architectures = config_data.get("architectures") or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    if cls is None:
        cls = transformers.AutoModel
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(
                str(folder),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=safetensors,
                dtype=torch.float32,
            )
    except Exception as error:  # noqa: BLE001 - transformers raises many types
        raise FormatError(
            f"transformers could not load {src.name!r} offline: {_first_line(error)}"
        ) from None
    positions = getattr(model.config, "max_position_embeddings", None)
    tokenizer = _hf_tokenizer(transformers, folder, min(128, positions or 128))
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None and tokenizer is not None:
        pad = getattr(tokenizer.backend, "pad_token_id", None)
    wrapped = HuggingFaceClassifier(model, pad_token_id=pad)
    notes = [f"{type(model).__name__} ({config_data.get('model_type', '?')}), loaded offline"]
    if tokenizer is None:
        notes.append("no tokenizer files in the folder: give token ids (.pt/.npz) as data")
    id2label = getattr(model.config, "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label))]
    named = labels and not all(re.fullmatch(r"LABEL_\d+", label) for label in labels)
    if named:
        notes.append(f"classes from config.json: {', '.join(labels[:10])}")
    return LoadedModel(
        model=wrapped,
        format="huggingface",
        source=src.name,
        params=_count(wrapped),
        input_kind="text" if tokenizer is not None else None,
        input_dtype=torch.int64,
        tokenizer=tokenizer,
        class_names=tuple(labels) if named else (),
        notes=tuple(notes),
        warnings=("pickled weights loaded because you trusted the folder",)
        if pickled and not safetensors
        else (),
    )


class HuggingFaceClassifier(nn.Module):
    """A Hugging Face model as one tensor in, logits out: token ids -> (batch, classes)."""

    def __init__(self, model: nn.Module, pad_token_id: int | None) -> None:
        super().__init__()
        self.model = model
        self.pad_token_id = pad_token_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = None if self.pad_token_id is None else (input_ids != self.pad_token_id).long()
        output = self.model(input_ids=input_ids, attention_mask=mask)
        logits = getattr(output, "logits", None)
        if logits is None:
            logits = output.last_hidden_state[:, 0]  # a bare encoder: its first token's state
        return logits


@dataclass(frozen=True)
class _HFTokenize:
    backend: Any
    max_length: int

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        encoded = self.backend(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return encoded["input_ids"]


def _hf_tokenizer(transformers: Any, folder: Path, max_length: int = 128) -> _HFTokenize | None:
    files = {"tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json"}
    if not files & {p.name for p in folder.iterdir()}:
        return None
    try:
        backend = transformers.AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception:  # noqa: BLE001 - no usable tokenizer: token ids must come as data
        return None
    limit = getattr(backend, "model_max_length", max_length)
    return _HFTokenize(backend, min(max_length, limit if isinstance(limit, int) else max_length))


# ---- helpers -----------------------------------------------------------------------------------


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shape(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape)) or "a scalar"


def _few(items: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _count_of(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


# ---- the registry ------------------------------------------------------------------------------


def _load_torch(src: Source, options: ModelOptions) -> LoadedModel:
    """A torch.save file: a state dict, or a whole pickled model (only when trusted)."""
    obj = torch_load(src, trust=options.trust_pickle, what=f"the model file {src.name!r}")
    if isinstance(obj, nn.Module):
        return _pickled_model(src, obj)
    return _load_weights(src, "state_dict", obj, options.architecture, options.strict)


def _load_hf(src: Source, options: ModelOptions) -> LoadedModel:
    return _load_huggingface(src, options.trust_pickle)


def _load_safetensors(src: Source, options: ModelOptions) -> LoadedModel:
    state = _read_safetensors(src)
    return _load_weights(src, "safetensors", state, options.architecture, options.strict)


#: Model formats by the name detect_format gives; `register_model_format` adds one.
MODEL_FORMATS: Registry[Format[LoadedModel]] = Registry()
for _builtin in (
    Builtin("export", FORMATS["export"], lambda s, o: _load_export(s, o.limits, o.trust_pickle)),
    Builtin("torchscript", FORMATS["torchscript"], lambda s, o: _load_torchscript(s, o.limits)),
    Builtin("huggingface", FORMATS["huggingface"], _load_hf),
    Builtin("safetensors", FORMATS["safetensors"], _load_safetensors),
    Builtin("torch", "PyTorch pickle file", _load_torch),
):
    MODEL_FORMATS.register(_builtin, sniffed=False)


def register_model_format(fmt: Format[LoadedModel]) -> Format[LoadedModel]:
    """Add a model format: sniffed before the built-in ones, loaded by its own `load`."""
    FORMATS[fmt.name] = fmt.label
    return MODEL_FORMATS.register(fmt)
