"""What several test modules build: hostile pickles, exported programs, the tabular demo as files.

Imported as `tests.helpers` (the repository root is on the path, see pyproject.toml).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch
from torch import nn

import workbench as wb


class Touch:
    """Unpickling this creates `path`: the marker that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class Evil:
    """Unpickling this writes 'pwned' into `marker` through builtins.exec."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    # The CLI runs with one thread; reductions split by thread count could differ in the last bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def export(
    model: nn.Module, example: torch.Tensor, path: Path | io.BytesIO, dynamic: bool = True
) -> None:
    """torch.export.save of `model` on `example`, its batch dimension dynamic unless not."""
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=shapes), path)


def tabular_files(folder: Path) -> dict[str, Path]:
    """The tabular demo as a user would bring it: a torch.export program and a validation CSV."""
    demo = wb.load_demo("tabular-mlp")
    x, y = demo.val.tensors
    export(demo.model, x[:2], folder / "breast-cancer-mlp.pt2")
    frame = pd.DataFrame(x.double().numpy(), columns=list(demo.meta.feature_names))
    frame["target"] = y.numpy()
    frame.to_csv(folder / "breast-cancer-val.csv", index=False)
    return {"model": folder / "breast-cancer-mlp.pt2", "data": folder / "breast-cancer-val.csv"}
