"""Values the slider path does not wait for: computed on first read, or in a background thread.

An exact figure that costs more than the rest of a step (the zlib length of a changed layer, the
per-layer table) is a `Lazy`: reading it gives the exact value, computing it then if no one has
yet. A `Lazy.background` one starts at once on a worker thread (zlib releases the GIL), so by
the time a view reads it, it is usually done; a read before the worker starts it computes it on
the reader's thread instead of queueing behind other work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:  # one worker: off the slider path, without crowding its forward passes
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-lazy")
        return _POOL


class Lazy(Generic[T]):
    """A value built once, on first `get()` (from any thread; others wait for the same one)."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build: Callable[[], T] | None = build
        self._value: T | None = None
        self._future: Future | None = None
        self._lock = threading.Lock()

    @classmethod
    def background(cls, build: Callable[[], T]) -> Lazy[T]:
        """Started now on the worker thread; `get()` waits for it, or builds it if not started."""
        lazy = cls(build)
        lazy._future = _pool().submit(lazy.get)
        return lazy

    @property
    def ready(self) -> bool:
        """Whether `get()` returns without computing or waiting."""
        return self._build is None

    def get(self) -> T:
        if self._build is None:
            return self._value  # type: ignore[return-value]
        with self._lock:
            if self._build is not None:
                self._value = self._build()
                self._build = None
        return self._value  # type: ignore[return-value]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_built, (self.get(),))  # pickles as its value


def _built(value: T) -> Lazy[T]:
    lazy = Lazy(lambda: value)
    lazy.get()
    return lazy


def resolve(value: T | Lazy[T]) -> T:
    """The value itself, or a `Lazy`'s value."""
    return value.get() if isinstance(value, Lazy) else value
