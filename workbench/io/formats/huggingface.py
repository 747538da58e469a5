"""Hugging Face model folders (config.json + safetensors): strictly offline, never remote code;
built as their family intends by `workbench.models.text`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from workbench.io.formats.base import Head, first_line
from workbench.io.formats.loaded import LoadedModel, ModelFormat
from workbench.io.safety import (
    FormatError,
    MissingDependencyError,
    Source,
    UnsafeFileError,
    unsafe_pickle_message,
)
from workbench.models import text
from workbench.models.text import HuggingFaceModel


@dataclass(frozen=True)
class HuggingFaceOptions:
    trust_pickle: bool = False  # pytorch_model.bin without safetensors: only when trusted
    # Tokens per text (default text.DEFAULT_MAX_LENGTH); the folder's own limit caps it.
    max_length: int | None = None


class HuggingFaceFormat(ModelFormat, name="huggingface", options=HuggingFaceOptions):
    """A folder with a config.json."""

    def load(self, src: Source, options: HuggingFaceOptions) -> LoadedModel:
        return _load_huggingface(src, options.trust_pickle, options.max_length)

    def sniff(self, head: Head) -> bool:
        return head.folder is not None and (head.folder / "config.json").is_file()


def _load_huggingface(src: Source, trust: bool, max_length: int | None) -> LoadedModel:
    folder = src.path
    assert folder is not None
    transformers = text.offline_transformers()  # local_files_only below too
    if transformers is None:
        raise MissingDependencyError(
            f"{src.name!r} is a Hugging Face model folder; loading it needs transformers "
            "(in requirements.txt): pip install -r requirements.txt -c constraints.txt"
        )
    try:
        config_data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FormatError(f"config.json in {src.name!r} is not valid JSON: {error}") from None
    if not isinstance(config_data, dict):
        raise FormatError(f"config.json in {src.name!r} is not a JSON object")
    if "auto_map" in config_data:
        raise UnsafeFileError(
            f"{src.name!r} needs its own Python code (config.json has auto_map, i.e. "
            "trust_remote_code); code from a model folder is never run"
        )
    names = {p.name for p in folder.iterdir()}
    safetensors = any(n.endswith(".safetensors") for n in names)
    pickled = any(n.endswith((".bin", ".pt", ".pth", ".ckpt")) for n in names)
    if not safetensors and not (pickled and trust):
        if pickled:
            raise UnsafeFileError(
                unsafe_pickle_message(f"{src.name!r} (pytorch_model.bin)", scan=None)
            )
        raise FormatError(
            f"{src.name!r} has a config.json but no weights (*.safetensors); found "
            f"{', '.join(sorted(names)[:8])}"
        )
    try:
        built = text.build(
            transformers,
            folder,
            config_data,
            use_safetensors=safetensors,
            max_length=max_length,
        )
    except text.TextModelError as error:
        raise FormatError(f"{src.name!r}: {error}") from None
    except Exception as error:  # noqa: BLE001 - transformers raises many types
        raise FormatError(
            f"transformers could not load {src.name!r} offline: {first_line(error)}"
        ) from None
    return LoadedModel.of(
        built.model,
        "huggingface",
        src,
        input_kind="text" if built.tokenizer is not None else None,
        input_dtype=torch.int64,
        tokenizer=built.tokenizer,
        class_names=built.class_names,
        notes=built.notes,
        warnings=("pickled weights loaded because you trusted the folder",)
        if pickled and not safetensors
        else (),
    )


#: The wrapper's old name (a classifier was all it loaded).
HuggingFaceClassifier = HuggingFaceModel
