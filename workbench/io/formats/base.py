"""The format protocol, what a sniff sees (`Head`), the registry load_model and load_data walk."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from workbench.io.safety import (
    DataError,
    Limits,
    SafeZip,
    Source,
    is_zip,
    looks_like_pickle,
)

T = TypeVar("T", covariant=True)

#: Names that say a file is text: a CSV may start with "c", "(" or "]" as a protocol-0 pickle
#: does, so for these the name decides before the content.
TEXT_SUFFIXES = (".csv", ".tsv", ".txt")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle")
_SAFETENSORS_MAX_HEADER = 100 << 20


class Head(bytes):
    """The first 64 bytes of a file, which a format's `sniff` tests.

    With what the built-in formats also look at: the file's name and size, a folder's path, an
    archive's member names (read after SafeZip's checks, so no sniff sees an unchecked zip) and
    the start of the file as text.
    """

    source: Source
    folder: Path | None  # a folder given as the model (a Hugging Face model folder)
    members: tuple[str, ...] | None  # a zip archive's member names; None: not a zip

    @classmethod
    def of(cls, src: Source, *, limits: Limits, what: str) -> Head:
        folder = src.path if src.path is not None and src.path.is_dir() else None
        head = cls(b"" if folder else src.head(64))
        head.source, head.folder, head.members = src, folder, None
        if is_zip(head):
            with SafeZip(src, limits=limits, what=what) as archive:
                head.members = tuple(archive.names)
        return head

    @property
    def suffix(self) -> str:
        return self.source.suffix

    @property
    def size(self) -> int:
        return self.source.size

    @cached_property
    def text(self) -> str | None:
        """The first 64 KiB as UTF-8 text, or None for binary bytes."""
        return decode_text(self.source.head(1 << 16), self.source.name, strict=False)

    @property
    def named_text(self) -> bool:
        """Text named as text (.csv, .tsv, .txt): the name decides, whatever it starts with."""
        return self.members is None and self.suffix in TEXT_SUFFIXES and self.text is not None

    @property
    def pickle_like(self) -> bool:
        """Named or shaped like a pickle, and not text named as text."""
        return (
            self.members is None
            and not self.named_text
            and (self.suffix in PICKLE_SUFFIXES or looks_like_pickle(self))
        )

    @property
    def free_text(self) -> bool:
        """Text whose name says nothing and that does not start like a pickle: content decides."""
        return (
            self.members is None
            and self.suffix not in TEXT_SUFFIXES
            and not self.pickle_like
            and self.text is not None
        )


class Format(Protocol[T]):
    """A file format: a name, a label for people, a sniff of the first bytes, a loader.

    A format may name its options dataclass as `Options`; load_model / load_data then build it
    from their keywords (each field from the keyword of the same name).
    """

    name: str
    label: str

    def sniff(self, head: Head) -> bool:
        """Whether a file starting with `head` (bytes, see `Head`) is in this format."""
        ...

    def load(self, src: Source, options: Any) -> T:
        """The loaded file; `options` is the format's own options dataclass."""
        ...


F = TypeVar("F", bound=Format)


class Registry(Generic[F]):
    """Formats by name, sniffed in order: added formats first, then the built-ins in the order
    they were given (an order the security rules fix; see io/models.py and io/data.py)."""

    def __init__(self, builtins: Sequence[F] = ()) -> None:
        self._formats: dict[str, F] = {}
        self._options: dict[str, type | None] = {}
        self._added: list[str] = []
        self._builtins: list[str] = []
        for fmt in builtins:
            self._builtins.append(self._add(fmt, None))

    def _add(self, fmt: F, options: type | None) -> str:
        self.unregister(fmt.name)
        self._formats[fmt.name] = fmt
        self._options[fmt.name] = options or getattr(fmt, "Options", None)
        return fmt.name

    def register(self, fmt: F, options: type | None = None) -> F:
        """Add a format, sniffed before the built-ins; `options` overrides `fmt.Options`."""
        self._added.append(self._add(fmt, options))
        return fmt

    def unregister(self, name: str) -> None:
        self._formats.pop(name, None)
        self._options.pop(name, None)
        for order in (self._added, self._builtins):
            if name in order:
                order.remove(name)

    def __getitem__(self, name: str) -> F:
        return self._formats[name]

    def __contains__(self, name: object) -> bool:
        return name in self._formats

    def __iter__(self) -> Iterator[F]:
        """In sniffing order."""
        return (self._formats[n] for n in (*self._added, *self._builtins))

    def sniff(self, head: Head) -> F | None:
        """The first format that claims these bytes, if any."""
        return next((fmt for fmt in self if fmt.sniff(head)), None)

    def options(self, name: str, keywords: Mapping[str, Any]) -> Any:
        """The format's options built from a loader's keywords (None if it declares none)."""
        cls = self._options.get(name)
        if cls is None or not is_dataclass(cls):
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in keywords.items() if k in names})


# ---- shared by the formats ---------------------------------------------------------------------


def is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length, then the JSON header itself."""
    if len(head) < 10:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= min(size - 8, _SAFETENSORS_MAX_HEADER) and head[8:9] == b"{"


def decode_text(data: bytes, name: str, strict: bool = True) -> str | None:
    """UTF-8 text; strict: DataError for other bytes, else None (a cut character at the end of a
    sample is fine)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        if not strict and error.start >= len(data) - 3:
            return data[: error.start].decode("utf-8-sig")
        if strict:
            raise DataError(
                f"{name!r} is not UTF-8 text: byte {error.start} is {data[error.start]:#04x}"
            ) from None
        return None


def sniff_delimiter(text: str) -> str | None:
    """The delimiter of a table, if the text is one (the same count on each of 20 lines)."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(lines) < 2:
        return "," if lines and "," in lines[0] else None
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|")
    except csv.Error:
        return None
    counts = {line.count(dialect.delimiter) for line in lines}
    return dialect.delimiter if len(counts) == 1 and counts != {0} else None


def first_line(error: BaseException, n: int = 300) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:n]


def few(items: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
