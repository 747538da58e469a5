"""The format protocol and the registry that load_model / load_data dispatch through."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from workbench.io.safety import DEFAULT_LIMITS, Limits, Source

T = TypeVar("T", covariant=True)


class Format(Protocol[T]):
    """A file format: a name, a label for people, a sniff of the first bytes, a loader."""

    name: str
    label: str

    def sniff(self, head: bytes) -> bool:
        """Whether a file starting with `head` is in this format."""
        ...

    def load(self, src: Source, options: Any) -> T:
        """The loaded file; `options` is the format's own options dataclass."""
        ...


@dataclass(frozen=True)
class ModelOptions:
    """What loading a model may use; each format reads the fields it needs."""

    architecture: Any = None  # weight formats: `file.py:factory`, a callable or a module
    trust_pickle: bool = False  # the full unpickler runs code: never for uploads
    strict: bool = True  # missing or unexpected keys are errors
    limits: Limits = DEFAULT_LIMITS


F = TypeVar("F", bound=Format)


class Registry(Generic[F]):
    """Formats by name, in sniffing order."""

    def __init__(self) -> None:
        self._formats: dict[str, F] = {}
        # Sniffed before the built-in detection (whose order the issue-10 fixes fix), for formats
        # added later; a built-in format leaves detection to the module's detector.
        self._sniffed: list[str] = []

    def register(self, fmt: F, *, sniffed: bool = True) -> F:
        self._formats[fmt.name] = fmt
        if sniffed and fmt.name not in self._sniffed:
            self._sniffed.append(fmt.name)
        return fmt

    def unregister(self, name: str) -> None:
        self._formats.pop(name, None)
        if name in self._sniffed:
            self._sniffed.remove(name)

    def __getitem__(self, name: str) -> F:
        return self._formats[name]

    def __contains__(self, name: object) -> bool:
        return name in self._formats

    def __iter__(self) -> Iterator[F]:
        return iter(self._formats.values())

    def sniff(self, head: bytes) -> F | None:
        """The first added format that claims these bytes, if any."""
        return next((self._formats[n] for n in self._sniffed if self._formats[n].sniff(head)), None)


@dataclass(frozen=True)
class Builtin:
    """A built-in format: detected by its module's detector, loaded by one function."""

    name: str
    label: str
    loader: Callable[[Source, Any], Any]

    def sniff(self, head: bytes) -> bool:
        return False

    def load(self, src: Source, options: Any) -> Any:
        return self.loader(src, options)
