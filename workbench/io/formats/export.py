"""torch.export programs (.pt2): checked before torch.export.load, loaded under `code_free()`.

torch.export.load unpickles payloads (falling back to the full unpickler), evaluates symbolic
expressions with sympy (eval), execs guard code and calls whatever the graph names. From an
untrusted file it reads a checked copy of the archive inside `code_free()`, where no unpickler
but the weights-only one exists; the archive's expressions, guards, names and graph targets are
checked against the allow-lists below, before and after loading, as a second wall.
"""

from __future__ import annotations

import io
import json
import keyword
import math
import operator
import re
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workbench.io.formats.base import Head, first_line
from workbench.io.formats.loaded import LoadedModel, ModelFormat
from workbench.io.safety import (
    DEFAULT_LIMITS,
    EXPORT_ADVICE,
    FormatError,
    Limits,
    LoadError,
    SafeZip,
    Source,
    UnsafeFileError,
    check_expression,
    code_free,
    torch_load,
    walk_json,
)


@dataclass(frozen=True)
class ExportOptions:
    trust_pickle: bool = False  # trusted: torch.export.load as is, the contents unchecked
    limits: Limits = DEFAULT_LIMITS


class ExportFormat(ModelFormat, name="export", options=ExportOptions):
    """A torch.export.save archive: its `archive_format` marker or its `models/*.json`."""

    def load(self, src: Source, options: ExportOptions) -> LoadedModel:
        return _load_export(src, options.limits, options.trust_pickle)

    def sniff(self, head: Head) -> bool:
        names = head.members or ()
        return any(n.endswith("archive_format") for n in names) or any(
            re.search(r"(^|/)models/[^/]+\.json$", n) for n in names
        )


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
    # See the module's docstring: untrusted, torch reads a checked copy inside code_free().
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
            f"saved by an incompatible PyTorch?): {first_line(error)}"
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
    return LoadedModel.of(
        module,
        "export",
        src,
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
                    f"{first_line(error)}"
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
