"""Size accounting: what a pruned model takes in each storage format, and what it computes."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from workbench.evaluate.lazy import Lazy, resolve

#: zlib level used for compressed sizes: gzip's and zip's default.
COMPRESSION_LEVEL = 6
#: Lazy compressed sizes of tensors this large (elements) start at once on a worker thread;
#: smaller ones take less time than handing them over (zlib of 1,024 fp32 values: 0.09 ms,
#: a hand-over 0.02 ms), so the first read measures them.
BACKGROUND_ELEMENTS = 1 << 10


@dataclass(frozen=True)
class TensorSize:
    """Storage figures of one parameter tensor, as stored after pruning."""

    params: int
    nonzero: int
    dense_bytes: int
    sparse_bytes: int
    int8_bytes: int
    # zlib is most of a slider step's fixed cost: `lazy` ones are measured off the slider path.
    _compressed: int | Lazy[int] = field(repr=False, compare=False)

    @property
    def compressed_bytes(self) -> int:
        return resolve(self._compressed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorSize):
            return NotImplemented
        return self._figures() == other._figures()

    def __hash__(self) -> int:
        return hash(self._figures())

    def __reduce__(self) -> tuple[Any, ...]:
        return (TensorSize, self._figures())

    def _figures(self) -> tuple[int, ...]:
        return (
            self.params,
            self.nonzero,
            self.dense_bytes,
            self.sparse_bytes,
            self.int8_bytes,
            self.compressed_bytes,
        )

    @classmethod
    def of(cls, tensor: torch.Tensor, sparse: bool, lazy: bool = False) -> TensorSize:
        """Figures of a tensor; `sparse` ones (pruned weights) are stored with zeros elided.

        `lazy`: the compressed length is measured when first read, or on a worker thread for
        a large tensor; only for tensors no one modifies afterwards (the engine's own)."""
        values = tensor.detach().float().cpu().contiguous()
        n = values.numel()
        nonzero = int(torch.count_nonzero(values))
        # Dense fp32: four bytes per parameter, zeros included.
        dense = 4 * n
        bitmask = math.ceil(n / 8)
        if sparse:
            rows = values.shape[0] if values.dim() > 0 else 1
            sparse_bytes = sparse_storage_bytes(n, nonzero, rows)
            # int8: one byte per nonzero, its bitmask, and one fp32 scale for the tensor.
            int8 = nonzero + bitmask + 4
        else:
            sparse_bytes = dense
            int8 = n + 4
        # Compressed: measured length of the deflate stream of the tensor's fp32 bytes, as
        # np.savez_compressed stores each array of a state dict.
        if not lazy:
            return cls(n, nonzero, dense, sparse_bytes, int8, compressed_length(values))
        start = Lazy.background if n >= BACKGROUND_ELEMENTS else Lazy
        return cls(n, nonzero, dense, sparse_bytes, int8, start(lambda: compressed_length(values)))


def compressed_length(values: torch.Tensor) -> int:
    """Length of the deflate stream (zlib, as zip/gzip store it) of a CPU tensor's bytes."""
    return len(zlib.compress(values.numpy().tobytes(), COMPRESSION_LEVEL))


def sparse_storage_bytes(params: int, nonzero: int, rows: int) -> int:
    """Bytes of a pruned tensor in the smaller of its two sparse encodings."""
    # CSR over (output, rest): fp32 values, int32 column indices and row pointers.
    csr = 8 * nonzero + 4 * (rows + 1)
    # Bitmask + values: one bit per position, then the fp32 nonzeros.
    return min(csr, math.ceil(params / 8) + 4 * nonzero)


def effective_flops(flops_dense: int, layers: Iterable[tuple[int, int, int]]) -> float:
    """FLOPs with zeroed weights' work skipped; `layers` is (flops, nonzero, params) of each
    prunable layer, in the model's order (the engine and the budget solver sum the same way,
    so their roundings agree)."""
    effective = float(flops_dense)
    for flops, nonzero, params in layers:
        effective -= flops * (1 - nonzero / params)
    return effective


def total_size(tensors: list[TensorSize], flops_dense: int, flops_effective: float) -> Figures:
    """`report.size`: parameter-storage figures summed over the model's parameters, plus FLOPs."""
    tensors = list(tensors)  # kept for the compressed total, read later
    total = sum(t.params for t in tensors)
    nonzero = sum(t.nonzero for t in tensors)
    return Figures(
        {
            "total_params": total,
            "nonzero_params": nonzero,
            # Fraction of all parameters (biases and unpruned layers included) that are zero.
            "sparsity": 1.0 - nonzero / total if total else 0.0,
            "dense_bytes": sum(t.dense_bytes for t in tensors),
            "sparse_bytes": sum(t.sparse_bytes for t in tensors),
            "compressed_bytes": Lazy(lambda: sum(t.compressed_bytes for t in tensors)),
            "int8_bytes": sum(t.int8_bytes for t in tensors),
            # Multiply-add FLOPs of one sample, counted by torch.utils.flop_counter.FlopCounterMode.
            "flops_dense": flops_dense,
            # The same with the work of zeroed weights (and so removed channels) skipped.
            "flops_effective": round(flops_effective),
        }
    )


class Figures(Mapping[str, float]):
    """A read-only mapping of size figures; a figure given as a `Lazy` is computed when first
    read (`compressed_bytes`: the zlib lengths), so every read is exact and the slider path
    does not wait for it. Equal to a dict of the same figures."""

    def __init__(self, values: Mapping[str, float | Lazy[float]]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> float:
        return resolve(self._values[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def ready(self, key: str) -> bool:
        """Whether reading `key` returns at once (a lazy figure is computed or being computed
        in the background otherwise)."""
        value = self._values[key]
        return not isinstance(value, Lazy) or value.ready

    def __repr__(self) -> str:
        return repr(dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Figures, (dict(self),))
