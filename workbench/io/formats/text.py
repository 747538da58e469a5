"""Text lines, one sample a line, labelled by a `__label__<class>` prefix (fastText's) or not."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from workbench.io.formats.base import Head, decode_text
from workbench.io.formats.loaded import DataFormat, LoadedData
from workbench.io.formats.targets import categorical
from workbench.io.safety import DEFAULT_LIMITS, DataError, Limits, Source


@dataclass(frozen=True)
class TextOptions:
    tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None  # None: byte_tokenizer
    max_length: int = 128
    class_names: Sequence[str] | None = None
    limits: Limits = DEFAULT_LIMITS


class TextFormat(DataFormat, name="text", options=TextOptions):
    """Text named .txt, or text that is not a table (a CSV is sniffed before)."""

    def load(self, src: Source, o: TextOptions) -> LoadedData:
        return _read_text(src, o.tokenizer, o.max_length, o.class_names)

    def sniff(self, head: Head) -> bool:
        return head.suffix == ".txt" if head.named_text else head.free_text


_LABEL = re.compile(r"^__label__(\S+)\s+(.*)$")


def byte_tokenizer(max_length: int = 128) -> Callable[[Sequence[str]], torch.Tensor]:
    """UTF-8 bytes + 1 as token ids, padded with 0 and cut to max_length."""

    def tokenize(texts: Sequence[str]) -> torch.Tensor:
        ids = torch.zeros(len(texts), max_length, dtype=torch.int64)
        for i, text in enumerate(texts):
            encoded = list(text.encode("utf-8")[:max_length])
            ids[i, : len(encoded)] = torch.tensor(encoded, dtype=torch.int64) + 1
        return ids

    return tokenize


def _read_text(
    src: Source,
    tokenizer: Callable[[Sequence[str]], torch.Tensor] | None,
    max_length: int,
    class_names: Sequence[str] | None,
) -> LoadedData:
    text = decode_text(src.read(), src.name)
    assert text is not None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"the text file {src.name!r} has no non-empty lines")
    matches = [_LABEL.match(line) for line in lines]
    labelled = [m is not None for m in matches]
    if any(labelled) and not all(labelled):
        first = labelled.index(False) if labelled[0] else labelled.index(True)
        raise DataError(
            f"{src.name!r}: some lines start with __label__<class> and some do not (e.g. line "
            f"{first + 1}); label every line or none"
        )
    notes: list[str] = []
    targets = None
    names = list(class_names or [])
    label_map: tuple[tuple[str, int], ...] = ()
    if all(labelled):
        texts = [m.group(2) for m in matches if m is not None]
        labels = [m.group(1) for m in matches if m is not None]
        targets, names, label_map, notes = categorical(labels, src.name, "__label__", class_names)
    else:
        texts = lines
        notes.append(
            "no __label__ prefixes: label-free (the pruned model is compared with the dense)"
        )
    tokenize = tokenizer or byte_tokenizer(max_length)
    try:
        inputs = tokenize(texts)
    except Exception as error:  # noqa: BLE001 - the tokenizer is the caller's
        raise DataError(f"tokenizing {src.name!r} failed: {error}") from None
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or len(inputs) != len(texts):
        raise DataError(
            f"the tokenizer must return an (N, L) tensor for N lines; got "
            f"{getattr(inputs, 'shape', type(inputs).__name__)}"
        )
    if tokenizer is None:
        notes.append(f"tokenized as UTF-8 bytes (+1, 0 = padding), {max_length} tokens per line")
    return LoadedData.of(
        inputs,
        targets,
        src,
        "text",
        "text",
        class_names=tuple(names),
        target_name="__label__" if targets is not None else "",
        label_map=label_map,
        notes=tuple(notes),
        examples=tuple(texts[:5]),
    )
