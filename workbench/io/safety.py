"""Safety rails for files people bring: size caps, checked zip archives, no unpickling untrusted.

Every failure is a `LoadError` (a ValueError) whose message says what was expected and what was
found; the subclasses tell the kind of failure apart.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import pickletools
import re
import stat
import sys
import threading
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath
from typing import IO, Any

import torch

from workbench.errors import WorkbenchError

MB = 1 << 20


class LoadError(WorkbenchError):
    """A model or data file could not be loaded."""


class FormatError(LoadError):
    """The file is not in a format we read, or it is truncated or corrupt."""


class UnsafeFileError(LoadError):
    """Refused for safety: loading it would run code, or escape its folder."""


class SizeLimitError(UnsafeFileError):
    """Over a size cap: an upload, or what an archive decompresses to."""


class DataError(LoadError):
    """The data's content does not fit: empty, missing columns, NaNs, mixed labels..."""


class ArchitectureError(LoadError):
    """The architecture code or the weights that go into it do not fit."""


class CheckError(LoadError):
    """The model and the data do not fit together (shapes, dtypes, classes, targets)."""


class MissingDependencyError(LoadError):
    """An optional package is needed for this format."""


@dataclass(frozen=True)
class Limits:
    """Caps on what one file may cost: set by whoever runs the server, never by a page control.

    `Limits.from_env()` reads them from WORKBENCH_MAX_* variables (see ENV_LIMITS); the app
    takes the upload cap from Streamlit's own `server.maxUploadSize`.
    """

    max_file_bytes: int = 4096 * MB  # a file read from disk or uploaded
    # Everything decompressed from one archive (zip of images, .npz, .pt2): zip bombs stop here.
    max_unpacked_bytes: int = 512 * MB
    max_entries: int = 100_000  # members of one archive
    # A member decompressing to more than this many times its stored size (and over 1 MB).
    # Real tensors and images compress far less; a bomb far more.
    max_ratio: float = 100.0
    max_image_pixels: int = 64_000_000  # one decoded image (8000 x 8000)
    # What decoding may allocate, checked before it does: all pixels of an image archive, the
    # elements an array header declares, the cells of a CSV (numbers, before conversion).
    max_total_pixels: int = 64_000_000
    max_elements: int = 128_000_000  # 512 MB of float32
    max_columns: int = 10_000  # of a CSV: a wide file costs a parser pass per column
    # The first forward pass of a model whose code comes from the file runs in a child
    # process, stopped after this many seconds.
    dry_run_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Limits:
        """Defaults, then the operator's WORKBENCH_MAX_* variables, then `overrides`."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (variable, scale) in ENV_LIMITS.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            try:
                value = float(text) * scale
            except ValueError:
                raise LoadError(f"{variable} must be a number, got {text!r}") from None
            if not value > 0:
                raise LoadError(f"{variable} must be positive, got {text!r}")
            kind = next(f.type for f in fields(cls) if f.name == name)
            values[name] = value if kind == "float" else int(value)
        return cls(**{**values, **overrides})


# The operator's knobs: environment variable and the unit it is given in.
ENV_LIMITS = {
    "max_file_bytes": ("WORKBENCH_MAX_FILE_MB", MB),
    "max_unpacked_bytes": ("WORKBENCH_MAX_UNPACKED_MB", MB),
    "max_total_pixels": ("WORKBENCH_MAX_PIXELS", 1),
    "max_elements": ("WORKBENCH_MAX_ELEMENTS", 1),
    "max_columns": ("WORKBENCH_MAX_COLUMNS", 1),
    "dry_run_seconds": ("WORKBENCH_DRY_RUN_SECONDS", 1),
}

DEFAULT_LIMITS = Limits()


def mb(n: float) -> str:
    return f"{n / MB:,.1f} MB"


# ---- sources: a path on disk or the bytes of an upload ------------------------------------------


@dataclass(frozen=True)
class Source:
    """A file to load: a path, or bytes with the name they were uploaded under."""

    name: str
    size: int
    path: Path | None = None
    data: bytes | None = None

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")  # noqa: SIM115 - the caller closes it

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def head(self, n: int = 64) -> bytes:
        with self.open() as f:
            return f.read(n)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()


def as_source(
    source: str | os.PathLike[str] | bytes | Source,
    *,
    name: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    what: str = "file",
) -> Source:
    """A checked Source: the file exists, is a regular file, and is within the size cap."""
    if isinstance(source, Source):
        result = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        result = Source(name=name or "upload", size=len(data), data=data)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise LoadError(f"no such {what}: {str(path)!r}")
        if path.is_dir():
            result = Source(name=name or path.name, size=0, path=path)
            return result
        if not path.is_file():
            raise LoadError(f"{str(path)!r} is not a regular file")
        result = Source(name=name or path.name, size=path.stat().st_size, path=path)
    if result.size > limits.max_file_bytes:
        raise SizeLimitError(
            f"the {what} {result.name!r} is {mb(result.size)}, over the "
            f"{mb(limits.max_file_bytes)} limit"
        )
    if result.size == 0 and (result.path is None or not result.path.is_dir()):
        raise FormatError(f"the {what} {result.name!r} is empty (0 bytes)")
    return result


# ---- zip archives --------------------------------------------------------------------------------

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a member, or an empty archive's end record


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def check_member_name(name: str) -> str:
    """The member's path inside the archive, or UnsafeFileError if it could escape its folder."""
    if "\x00" in name:
        raise UnsafeFileError(f"archive member name {name!r} contains a NUL byte")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise UnsafeFileError(
            f"archive member {name!r} has an absolute path; expected paths inside the archive"
        )
    if ".." in posix.split("/"):
        raise UnsafeFileError(f"archive member {name!r} climbs out of its folder ('..'); refused")
    return posix


class SafeZip:
    """A zip archive checked before anything is read from it, read under a decompression budget.

    Refused: members whose path is absolute or contains `..`, symbolic links, encrypted
    members, more than `max_entries` members, a declared total over `max_unpacked_bytes`, and
    members that decompress more than `max_ratio` times their stored size.
    """

    def __init__(self, source: Source, *, limits: Limits = DEFAULT_LIMITS, what: str = "archive"):
        self.source, self.limits, self.what = source, limits, what
        self._file = source.open()
        try:
            self._zip = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
            self._file.close()
            raise FormatError(
                f"the {what} {source.name!r} is not a readable zip archive (truncated or "
                f"corrupt?): {error}"
            ) from None
        try:
            self._check()
        except BaseException:
            self.close()
            raise
        self._budget = limits.max_unpacked_bytes

    def _check(self) -> None:
        infos = self._zip.infolist()
        if len(infos) > self.limits.max_entries:
            raise SizeLimitError(
                f"the {self.what} {self.source.name!r} has {len(infos):,} members, over the "
                f"{self.limits.max_entries:,} limit"
            )
        seen: set[str] = set()
        total = 0
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = check_member_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeFileError(
                    f"archive member {info.filename!r} is a symbolic link; links are refused"
                )
            if info.flag_bits & 0x1:
                raise UnsafeFileError(f"archive member {info.filename!r} is encrypted")
            if name in seen:
                raise UnsafeFileError(f"archive member {info.filename!r} appears twice")
            seen.add(name)
            if info.is_dir():
                continue
            total += info.file_size
            stored = max(info.compress_size, 1)
            if info.file_size > MB and info.file_size / stored > self.limits.max_ratio:
                raise SizeLimitError(
                    f"archive member {info.filename!r} would decompress from {mb(stored)} to "
                    f"{mb(info.file_size)} (ratio {info.file_size / stored:,.0f}:1, over the "
                    f"{self.limits.max_ratio:,.0f}:1 limit): a decompression bomb?"
                )
            self.members[name] = info
        if total > self.limits.max_unpacked_bytes:
            raise SizeLimitError(
                f"the {self.what} {self.source.name!r} would decompress to {mb(total)}, over "
                f"the {mb(self.limits.max_unpacked_bytes)} limit"
            )

    @property
    def names(self) -> list[str]:
        return list(self.members)

    def size(self, name: str) -> int:
        return self.members[name].file_size

    def read(self, name: str) -> bytes:
        """A member's bytes, counted against the archive's decompression budget."""
        info = self.members[name]
        chunks, total = [], 0
        try:
            with self._zip.open(info) as member:
                while chunk := member.read(1 << 20):
                    total += len(chunk)
                    if total > self._budget:
                        raise SizeLimitError(
                            f"the {self.what} {self.source.name!r} decompresses to more than "
                            f"{mb(self.limits.max_unpacked_bytes)}, the limit"
                        )
                    chunks.append(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
            raise FormatError(
                f"member {name!r} of the {self.what} {self.source.name!r} is corrupt: {error}"
            ) from None
        self._budget -= total
        return b"".join(chunks)

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- pickles -------------------------------------------------------------------------------------

# The first bytes of torch.save's legacy (non-zip) format: the pickled magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_STRING_OPS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
}
# Globals every torch.save file names; the rest are what a message should point at.
_TENSOR_GLOBALS = re.compile(
    r"^(torch\.|collections\.OrderedDict$|_codecs\.encode$|builtins\.(set|frozenset|bytearray|"
    r"slice|complex)$|numpy\.(core\.)?multiarray\._reconstruct$|numpy\.dtype$|numpy\.ndarray$)"
)


def looks_like_pickle(head: bytes) -> bool:
    """Protocol 2+ pickles start with PROTO; older ones with a few opcodes we recognise."""
    return (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5) or head[:1] in (
        b"(",
        b"c",
        b"]",
        b"}",
    )


@dataclass(frozen=True)
class PickleScan:
    globals: tuple[str, ...]  # every module.name the pickle imports, in order
    complete: bool  # False: the stream ends early or holds an invalid opcode

    @property
    def suspicious(self) -> tuple[str, ...]:
        """Imports beyond what a file of tensors needs."""
        return tuple(g for g in self.globals if not _TENSOR_GLOBALS.match(g))


def scan_pickle(data: bytes) -> PickleScan:
    """The globals a pickle would import, read without unpickling anything."""
    found: list[str] = []
    strings: list[str] = []
    complete = False
    try:
        for opcode, arg, _pos in pickletools.genops(data):
            if opcode.name in _STRING_OPS and isinstance(arg, (str, bytes)):
                strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
            elif opcode.name in ("GLOBAL", "INST") and isinstance(arg, str):
                found.append(".".join(arg.split(" ", 1)))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif opcode.name == "STOP":
                complete = True
                break
    except Exception:  # noqa: BLE001 - a truncated or invalid stream: say so, below
        complete = False
    # Protocol 2 writes Python 2's module names: show today's.
    renamed = [
        re.sub(r"^__builtin__\.", "builtins.", g).replace("copy_reg.", "copyreg.") for g in found
    ]
    unique = tuple(dict.fromkeys(renamed))
    return PickleScan(globals=unique, complete=complete)


def _pickle_in(data: bytes) -> bytes | None:
    """The pickle stream of a torch.save file (data.pkl in its zip), or the bytes themselves."""
    if is_zip(data[:4]):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                return archive.read(name) if name else None
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return None
    return data


MODEL_ADVICE = (
    "Re-save only the weights (a state dict, or safetensors). A file you made yourself can be "
    "loaded from a path on your machine with trust_pickle=True (never an upload)."
)
EXPORT_ADVICE = (
    "torch.export.save writes tensors only: save the program again from the original model."
)


def unsafe_pickle_message(what: str, scan: PickleScan | None, advice: str = MODEL_ADVICE) -> str:
    names = ", ".join(dict.fromkeys((scan.suspicious or scan.globals)[:6])) if scan else ""
    found = f" (it imports {names})" if names else ""
    return (
        f"{what} holds pickled Python objects, not just tensors{found}. Unpickling runs code "
        f"from the file, so it was not loaded. {advice}"
    )


def torch_load(
    source: Source,
    *,
    trust: bool = False,
    what: str | None = None,
    advice: str = MODEL_ADVICE,
    limits: Limits = DEFAULT_LIMITS,
) -> Any:
    """torch.load with weights_only=True; the full unpickler only with trust.

    Raises UnsafeFileError for pickled objects beyond tensors when not trusted, FormatError for
    a truncated or corrupt file, SizeLimitError for a zip that decompresses past the caps.
    """
    what = what or f"{source.name!r}"
    data = source.read()
    if not is_zip(data[:4]) and not data.startswith(TORCH_LEGACY_MAGIC):
        return _plain_pickle(data, trust, what, advice)
    if is_zip(data[:4]):
        SafeZip(
            Source(source.name, len(data), data=data), limits=limits, what="PyTorch file"
        ).close()
    elif not trust:
        # The legacy format allocates every storage from a size the file states, before reading
        # it: an 8 KB file can ask for 8 GB. torch.save has not written it since PyTorch 1.6.
        raise UnsafeFileError(
            f"{what} is in the legacy torch.save format (before PyTorch 1.6), which is not read "
            "from untrusted files: load it and save it again with a current torch.save"
        )
    try:
        loaded = _TORCH_LOAD(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refusal = error
    except Exception as error:  # noqa: BLE001 - torch raises many types on corrupt files
        raise FormatError(
            f"{what} is not a readable PyTorch file (truncated or corrupt?): {_first_line(error)}"
        ) from None
    else:
        check_tensor_sizes(loaded, what, limits)
        return loaded
    stream = _pickle_in(data)
    scan = scan_pickle(stream) if stream is not None else None
    if scan is None or not scan.complete:
        raise FormatError(f"{what} is a truncated or corrupt pickle: it ends before its STOP")
    if not scan.suspicious and "Unsupported global" not in str(refusal):
        raise FormatError(
            f"{what} could not be read as plain tensors: {_weights_only_reason(refusal)}"
        )
    if not trust:
        # Name first what torch's weights-only unpickler refused (e.g. a model's own class).
        refused = re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(refusal))
        if refused:
            scan = PickleScan(globals=(*refused, *scan.globals), complete=True)
        raise UnsafeFileError(unsafe_pickle_message(what, scan, advice))
    return _trusted_unpickle(
        lambda: _TORCH_LOAD(io.BytesIO(data), map_location="cpu", weights_only=False), what
    )


# ---- no code from files, by construction ---------------------------------------------------------
#
# Third-party loaders (torch.export.load above all) call torch.load(weights_only=False),
# pickle.loads and TorchScript's object unpickler on payloads of the archive, and fall back to
# the full unpickler when the weights-only one refuses. Inside `code_free()` every one of those
# entry points is replaced, for the calling thread only, by one that cannot run code: torch.load
# always runs weights-only, the others refuse. Other threads (other browser sessions) see the
# originals. The allow-lists in front of such loaders stay as a second wall.

_TORCH_LOAD = torch.load  # the real loader, for this module's own calls
_guarded = threading.local()
_install_lock = threading.Lock()
_install_count = 0
_originals: dict[tuple[object, str], Any] = {}


class CodeRefused(UnsafeFileError, pickle.UnpicklingError):
    """A loader asked for the full unpickler inside `code_free()`.

    Also an UnpicklingError, so loaders that catch that type treat it as a refusal, and a
    LoadError, so callers see why.
    """


def _in_code_free() -> bool:
    return getattr(_guarded, "depth", 0) > 0


def _weights_only_torch_load(f: Any, *args: Any, **kwargs: Any) -> Any:
    kwargs["weights_only"] = True
    kwargs.pop("pickle_module", None)  # only the weights-only unpickler
    try:
        return _TORCH_LOAD(f, *args, **kwargs)
    except pickle.UnpicklingError as error:
        if isinstance(error, CodeRefused):
            raise
        raise CodeRefused(
            "a payload of the file holds pickled Python objects, not just tensors: "
            f"{_weights_only_reason(error)}. Unpickling runs code, so it was not loaded"
        ) from None


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise CodeRefused(f"the file asks for {what}, which can run code from the file; refused")

    return refuse


def _guarded_unpickler(original: type) -> type:
    class GuardedUnpickler(original):  # type: ignore[misc, valid-type]
        def load(self) -> Any:
            if _in_code_free():
                raise CodeRefused("the file asks for the full unpickler; refused")
            return super().load()

    return GuardedUnpickler


def _guards() -> list[tuple[object, str, Callable[..., Any]]]:
    import _pickle

    targets: list[tuple[object, str, Callable[..., Any]]] = [
        (_pickle, "loads", _refuse("the full unpickler (pickle.loads)")),
        (_pickle, "load", _refuse("the full unpickler (pickle.load)")),
        (torch, "load", _weights_only_torch_load),
        (torch.serialization, "load", _weights_only_torch_load),
        (pickle, "loads", _refuse("the full unpickler (pickle.loads)")),
        (pickle, "load", _refuse("the full unpickler (pickle.load)")),
        (pickle, "_loads", _refuse("the full unpickler (pickle.loads)")),
        (pickle, "_load", _refuse("the full unpickler (pickle.load)")),
        (torch._C, "_pickle_load_obj", _refuse("TorchScript's object unpickler")),
    ]
    return [(owner, name, fn) for owner, name, fn in targets if hasattr(owner, name)]


def _dispatch(original: Callable[..., Any], guarded: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return guarded(*args, **kwargs) if _in_code_free() else original(*args, **kwargs)

    call.__wrapped__ = original  # type: ignore[attr-defined]
    call.__doc__ = original.__doc__
    return call


@contextmanager
def code_free() -> Iterator[None]:
    """Within this block, this thread cannot unpickle anything but tensors."""
    global _install_count
    with _install_lock:
        if _install_count == 0:
            for owner, name, guarded in _guards():
                original = getattr(owner, name)
                _originals[(owner, name)] = original
                setattr(owner, name, _dispatch(original, guarded))
            # Classes stay classes (code may subclass them); their load() refuses in the block.
            for owner in (pickle, sys.modules.get("_pickle")):
                if owner is not None and isinstance(getattr(owner, "Unpickler", None), type):
                    _originals[(owner, "Unpickler")] = owner.Unpickler
                    owner.Unpickler = _guarded_unpickler(owner.Unpickler)
        _install_count += 1
    _guarded.depth = getattr(_guarded, "depth", 0) + 1
    try:
        yield
    finally:
        _guarded.depth -= 1
        with _install_lock:
            _install_count -= 1
            if _install_count == 0:
                for (owner, name), original in _originals.items():
                    setattr(owner, name, original)
                _originals.clear()


def check_tensor_sizes(value: Any, what: str, limits: Limits) -> None:
    """Tensors of a loaded file within the element cap, counted as the elements they expose: a
    stride-0 view of one byte can claim 2**40 elements, and converting it would allocate them."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        if total > limits.max_elements:
            raise SizeLimitError(
                f"{what} holds tensors of more than {limits.max_elements:,} elements in all, "
                "over the limit"
            )


def _plain_pickle(data: bytes, trust: bool, what: str, advice: str) -> Any:
    """A pickle not written by torch.save: only the full unpickler reads it."""
    scan = scan_pickle(data)
    if not scan.complete:
        raise FormatError(f"{what} is a truncated or corrupt pickle: it ends before its STOP")
    if not trust:
        raise UnsafeFileError(unsafe_pickle_message(what, scan, advice))
    return _trusted_unpickle(lambda: pickle.loads(data), what)  # noqa: S301 - trusted


def _trusted_unpickle(load: Callable[[], Any], what: str) -> Any:
    """The full unpickler, for a local file the user trusts: warned, and its errors one line."""
    warnings.warn(
        f"{what} was unpickled with the full unpickler because you trusted it: that ran any "
        "code it contains",
        stacklevel=4,
    )
    try:
        return load()
    except Exception as error:  # noqa: BLE001 - the file's own code may raise anything
        raise FormatError(f"{what} failed to unpickle: {_first_line(error)}") from None


def _weights_only_reason(error: Exception) -> str:
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0]
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


# ---- expressions that a file asks us to evaluate -------------------------------------------------

_SAFE_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Tuple,
    ast.List,
    ast.keyword,
    ast.Call,
    ast.Attribute,
    ast.Subscript,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)


def check_expression(
    text: str,
    *,
    names: Callable[[str], bool],
    attributes: frozenset[str] = frozenset(),
    subscripts: bool = False,
    what: str = "expression",
) -> None:
    """Refuse an expression a file wants evaluated unless it is plain arithmetic over allowed names.

    Allowed: numbers, short identifier-like strings, arithmetic, comparisons, calls of allowed
    names, the listed attributes, and (optionally) subscripts. No dunders, no other attributes.
    """
    if len(text) > 10_000:
        raise UnsafeFileError(f"{what} is {len(text):,} characters long; refused")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise UnsafeFileError(f"{what} {text[:80]!r} is not a valid expression") from None
    for node in ast.walk(tree):
        if not isinstance(node, _SAFE_NODES):
            raise UnsafeFileError(f"{what} {text[:80]!r} contains {type(node).__name__}")
        if isinstance(node, ast.Name) and ("__" in node.id or not names(node.id)):
            raise UnsafeFileError(f"{what} {text[:80]!r} uses the name {node.id!r}")
        if isinstance(node, ast.Attribute) and ("__" in node.attr or node.attr not in attributes):
            raise UnsafeFileError(f"{what} {text[:80]!r} reads the attribute {node.attr!r}")
        if isinstance(node, ast.Subscript) and not subscripts:
            raise UnsafeFileError(f"{what} {text[:80]!r} contains a subscript")
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            value = node.value if isinstance(node.value, str) else ""
            if "__" in value or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", value):
                raise UnsafeFileError(f"{what} {text[:80]!r} contains the string {value!r}")
        if isinstance(node, ast.keyword) and (node.arg is None or "__" in node.arg):
            raise UnsafeFileError(f"{what} {text[:80]!r} passes computed keyword arguments")
        if isinstance(node, ast.Call) and not isinstance(node.func, (ast.Name, ast.Attribute)):
            raise UnsafeFileError(f"{what} {text[:80]!r} calls a computed value")
        # Exact integer arithmetic is unbounded: 10**10**9 alone takes hours. Powers only to a
        # small literal exponent, integers only of machine size.
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, (int, float))
            and abs(node.value) > _MAX_LITERAL
        ):
            raise UnsafeFileError(f"{what} {text[:80]!r} holds a number over 2**63")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            _check_exponent(node.right, text, what)
        if isinstance(node, ast.Call) and _called(node) in _POWER_FUNCTIONS and len(node.args) > 1:
            _check_exponent(node.args[1], text, what)


_MAX_LITERAL = 2**63
_MAX_EXPONENT = 64
_POWER_FUNCTIONS = frozenset({"Pow", "PowByNatural", "FloatPow", "pow"})


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def _check_exponent(node: ast.AST, text: str, what: str) -> None:
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(node, ast.Call) and _called(node) == "Integer" and node.args:
        first = node.args[0]
        value = first.value if isinstance(first, ast.Constant) else None
    if not isinstance(value, int) or abs(value) > _MAX_EXPONENT:
        raise UnsafeFileError(
            f"{what} {text[:80]!r} raises to a power that is not a small whole number; refused"
        )


def walk_json(value: Any, key: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(key, value, parent) for every entry of a parsed JSON document."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v, value
            yield from walk_json(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from walk_json(item, key)
