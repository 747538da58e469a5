"""TorchScript files: run by TorchScript's interpreter, which cannot call Python.

It still runs the file's own code when loading (a scripted __setstate__) and may call any
registered operator: the code/ folder is read first and refused for what `_TORCHSCRIPT_REFUSED`
lists, before torch.jit.load sees the file.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import torch

from workbench.io.formats.base import Head, first_line
from workbench.io.formats.loaded import LoadedModel, ModelFormat
from workbench.io.safety import (
    DEFAULT_LIMITS,
    FormatError,
    Limits,
    SafeZip,
    Source,
    UnsafeFileError,
)


@dataclass(frozen=True)
class TorchScriptOptions:
    limits: Limits = DEFAULT_LIMITS


class TorchScriptFormat(ModelFormat, name="torchscript", options=TorchScriptOptions):
    """A torch.jit.save archive: a code/ folder and its constants.pkl."""

    def load(self, src: Source, options: TorchScriptOptions) -> LoadedModel:
        _check_torchscript(src, options.limits)
        try:
            with src.open() as f, warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # noted below instead
                module = torch.jit.load(f, map_location="cpu")
        except Exception as error:  # noqa: BLE001 - TorchScript raises RuntimeError and others
            raise FormatError(
                f"{src.name!r} is not a loadable TorchScript file (truncated or corrupt?): "
                f"{first_line(error)}"
            ) from None
        note = (
            "TorchScript runs as a whole: every slider change re-runs the model (exact, just "
            "not incremental); PyTorch deprecates TorchScript, torch.export (.pt2) replaces it"
        )
        return LoadedModel.of(module, self.name, src, notes=(note,))

    def sniff(self, head: Head) -> bool:
        names = head.members or ()
        return any("/code/" in n or n.startswith("code/") for n in names) and any(
            n.endswith("constants.pkl") for n in names
        )


# What a TorchScript file's code/ may not contain.
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
