"""The load page's work without widgets: bytes and options in; model, data, checks or a message out.

Every failure comes back as a message (`Staged.error`, `Built.error`), never as an exception, so
the page shows st.error and the app keeps the user's work. Unexpected errors are logged with
their traceback on the server only.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from workbench import ModelInfo, Workbench
from workbench.io import (
    DEFAULT_LIMITS,
    NORMALISATIONS,
    BuildResult,
    CheckReport,
    Limits,
    LoadedData,
    LoadedModel,
    LoadError,
    UnsafeFileError,
    build_workbench,
    check,
    load_data,
    load_model,
)
from workbench.io.safety import MB
from workbench.progress import Progress, drain

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Off unless the person running the server sets WORKBENCH_LOCAL_CODE=1: paths on this machine,
#: architecture files and trusted pickles read files and run code on the machine serving the
#: app, so they are for a server only you can reach (`make run` listens on localhost).
LOCAL_CODE_ENV = "WORKBENCH_LOCAL_CODE"


def local_code_allowed() -> bool:
    return os.environ.get(LOCAL_CODE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ModelOptions:
    architecture: str = ""  # path/to/file.py:factory on this machine, for weight files
    trust_pickle: bool = False


@dataclass(frozen=True)
class DataOptions:
    target: str | None = None  # None: chosen by name; "": no targets (label-free)
    ignore: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()  # class order, for categorical targets
    image_size: int = 0  # 0: keep the images' own size
    channels: int = 0  # 0: automatic (grayscale when every image is)
    normalisation: str = "none"  # a key of NORMALISATIONS, or "custom"
    mean: tuple[float, ...] = ()  # for "custom"
    std: tuple[float, ...] = ()
    max_samples: int = 0  # 0: all
    val_fraction: float = 1.0  # the share of the file used for validation (seeded split)
    seed: int = 0


@dataclass(frozen=True)
class Upload:
    """A file the user gave: the bytes of an upload, or a path on this machine."""

    name: str
    data: bytes | None = None
    path: str | None = None


@dataclass(frozen=True)
class Staged:
    """Loaded and checked, not yet built."""

    model: LoadedModel | None = None
    data: LoadedData | None = None
    report: CheckReport | None = None
    error: str | None = None
    model_error: str | None = None
    data_error: str | None = None

    @property
    def ready(self) -> bool:
        return self.report is not None and self.report.ok and self.error is None


@dataclass(frozen=True)
class Built:
    info: ModelInfo | None = None
    bench: Workbench | None = None
    error: str | None = None
    notes: tuple[str, ...] = field(default=())
    train: Any = None  # the data's training split, fitted like the validation data


def limits(max_upload_mb: float) -> Limits:
    """The operator's caps (WORKBENCH_MAX_* variables), with Streamlit's upload cap."""
    return Limits.from_env(max_file_bytes=int(max_upload_mb * MB))


def _message(error: Exception, what: str) -> str:
    if isinstance(error, LoadError):
        return str(error)
    # A bug or an unforeseen failure: the traceback goes to the server log, not the page.
    log.exception("unexpected error while %s", what)
    return f"unexpected error while {what}: {type(error).__name__}: {error}"


def stage_model(upload: Upload, options: ModelOptions, caps: Limits) -> LoadedModel:
    """LoadedModel or LoadError. Architecture files and paths are local; never from an upload."""
    if options.trust_pickle and upload.data is not None:
        raise UnsafeFileError(
            "an uploaded file is never unpickled, trusted or not: unpickling runs its code on "
            "the server. Upload weights (safetensors, a state dict) or a .pt2 program instead"
        )
    if (upload.path or options.trust_pickle or options.architecture) and not local_code_allowed():
        raise LoadError(
            "this server does not allow local paths, architecture files or trusted pickles "
            f"(its operator can allow them with {LOCAL_CODE_ENV}=1)"
        )
    source = upload.data if upload.data is not None else _local_path(upload.path or "")
    return load_model(
        source,
        name=upload.name,
        architecture=options.architecture.strip() or None,
        trust_pickle=options.trust_pickle,
        limits=caps,
    )


def modified(path: str) -> float:
    """A local file's modification time (0 if none): part of a cache key, so edits reload."""
    try:
        return Path(path.strip()).expanduser().stat().st_mtime
    except OSError:
        return 0.0


def _local_path(text: str) -> Path:
    path = Path(text.strip()).expanduser()
    if not text.strip():
        raise LoadError("type the path of a model file or a Hugging Face folder on this machine")
    if not path.exists():
        raise LoadError(f"no such file or folder on this machine: {text.strip()!r}")
    return path


def stage_data(
    upload: Upload,
    options: DataOptions,
    caps: Limits,
    tokenizer: Callable[[Sequence[str]], object] | None = None,
    model_classes: Sequence[str] = (),
) -> LoadedData:
    mean: Sequence[float] | None
    std: Sequence[float] | None
    if options.normalisation == "custom":
        mean, std = options.mean or None, options.std or None
    else:
        if options.normalisation not in NORMALISATIONS:
            raise LoadError(f"unknown normalisation {options.normalisation!r}")
        mean, std = NORMALISATIONS[options.normalisation]
    assert upload.data is not None
    return load_data(
        upload.data,
        name=upload.name,
        target=options.target,
        ignore=options.ignore,
        class_names=options.class_names or tuple(model_classes) or None,
        image_size=options.image_size or None,
        channels=options.channels or None,
        mean=mean,
        std=std,
        tokenizer=tokenizer,  # type: ignore[arg-type]
        max_samples=options.max_samples or None,
        val_fraction=options.val_fraction if options.val_fraction < 1 else None,
        seed=options.seed,
        limits=caps,
    )


def stage(
    model: Upload | None,
    data: Upload | None,
    model_options: ModelOptions = ModelOptions(),
    data_options: DataOptions = DataOptions(),
    caps: Limits = DEFAULT_LIMITS,
) -> Staged:
    """Load the model and the data and check them together; every failure as a message."""
    loaded_model = loaded_data = report = None
    model_error = data_error = check_error = None
    if model is not None:
        loaded_model, model_error = _attempt(
            f"loading {model.name!r}", lambda: stage_model(model, model_options, caps)
        )
    if data is not None:
        loaded_data, data_error = _attempt(
            f"loading {data.name!r}",
            lambda: stage_data(
                data,
                data_options,
                caps,
                tokenizer=loaded_model.tokenizer if loaded_model else None,
                model_classes=loaded_model.class_names if loaded_model else (),
            ),
        )
    if loaded_model is not None and loaded_data is not None:
        report, check_error = _attempt(
            "checking the model with the data",
            lambda: check(loaded_model, loaded_data, limits=caps),
        )
    error = model_error or data_error or check_error
    return Staged(loaded_model, loaded_data, report, error, model_error, data_error)


def build(
    staged: Staged,
    key: str,
    run: Callable[[Iterator[Progress[BuildResult]]], BuildResult] = drain,
) -> Built:
    """The Workbench for staged files; errors as a message.

    `run` consumes the build's progress events and returns their result: `drain` shows nothing,
    the page passes `ui.progress.show` to draw a bar.
    """
    if not staged.ready or staged.model is None or staged.data is None:
        return Built(error=staged.error or "load a model and its data, and fix the checks first")
    model, data = staged.model, staged.data
    done, error = _attempt(
        "building the workbench", lambda: run(build_workbench(model, data, name=key))
    )
    if done is None:
        return Built(error=error)
    return Built(info=done.info, bench=done.bench, train=done.train)


def _attempt(what: str, work: Callable[[], T]) -> tuple[T | None, str | None]:
    """`work()`'s value, or None and the message of what went wrong while doing `what`."""
    try:
        return work(), None
    except Exception as error:  # noqa: BLE001 - shown, never raised
        return None, _message(error, what)


def handle_upload(
    model_bytes: bytes,
    model_name: str,
    data_bytes: bytes,
    data_name: str,
    model_options: ModelOptions = ModelOptions(),
    data_options: DataOptions = DataOptions(),
    caps: Limits = DEFAULT_LIMITS,
    key: str | None = None,
) -> Built:
    """Bytes and options in; the model's info and Workbench, or an error message, out."""
    staged = stage(
        Upload(model_name, data=model_bytes),
        Upload(data_name, data=data_bytes),
        model_options,
        data_options,
        caps,
    )
    if staged.error is not None:
        return Built(error=staged.error)
    if staged.report is not None and not staged.report.ok:
        first = staged.report.errors[0]
        return Built(error=f"{first.check}: {first.message}")
    return build(staged, key or unique_key(model_name, ()))


def unique_key(filename: str, taken: Sequence[str]) -> str:
    """A short key for the model picker and the URL: 'yours-<stem>', numbered if taken."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(filename).stem).strip("-").lower() or "model"
    key = f"yours-{stem[:40]}"
    n = 2
    while key in taken:
        key = f"yours-{stem[:40]}-{n}"
        n += 1
    return key


# ---- what the page draws ---------------------------------------------------------------------


LEVELS = {"ok": "OK", "info": "Note", "warning": "Warning", "error": "Problem"}


def findings_table(report: CheckReport) -> pd.DataFrame:
    """One row per check: result (OK, Note, Warning, Problem), what was checked, what was found."""
    table = report.table
    table.insert(0, "result", table.pop("level").map(LEVELS))
    return table


def model_lines(model: LoadedModel) -> list[str]:
    lines = model.summary()
    if model.missing_keys:
        lines.append(f"missing keys kept their initial values: {', '.join(model.missing_keys)}")
    if model.unexpected_keys:
        lines.append(f"keys in the file the architecture does not have: "
                     f"{', '.join(model.unexpected_keys)}")  # fmt: skip
    return lines
