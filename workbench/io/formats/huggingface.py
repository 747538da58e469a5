"""Hugging Face model folders (config.json + safetensors): strictly offline, never remote code,
with the optional transformers extra."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.io.formats.base import Head, first_line
from workbench.io.formats.loaded import LoadedModel, ModelFormat
from workbench.io.safety import (
    FormatError,
    MissingDependencyError,
    Source,
    UnsafeFileError,
    unsafe_pickle_message,
)


@dataclass(frozen=True)
class HuggingFaceOptions:
    trust_pickle: bool = False  # pytorch_model.bin without safetensors: only when trusted


class HuggingFaceFormat(ModelFormat, name="huggingface", options=HuggingFaceOptions):
    """A folder with a config.json."""

    def load(self, src: Source, options: HuggingFaceOptions) -> LoadedModel:
        return _load_huggingface(src, options.trust_pickle)

    def sniff(self, head: Head) -> bool:
        return head.folder is not None and (head.folder / "config.json").is_file()


def _load_huggingface(src: Source, trust: bool) -> LoadedModel:
    folder = src.path
    assert folder is not None
    # Strictly offline, set before transformers reads its settings; local_files_only below too.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError:
        raise MissingDependencyError(
            f"{src.name!r} is a Hugging Face model folder; loading it needs the optional "
            "transformers extra: pip install -r requirements-hf.txt"
        ) from None
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
    architectures = config_data.get("architectures") or []
    cls = getattr(transformers, architectures[0], None) if architectures else None
    if cls is None:
        cls = transformers.AutoModel
    transformers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(
                str(folder),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=safetensors,
                dtype=torch.float32,
            )
    except Exception as error:  # noqa: BLE001 - transformers raises many types
        raise FormatError(
            f"transformers could not load {src.name!r} offline: {first_line(error)}"
        ) from None
    positions = getattr(model.config, "max_position_embeddings", None)
    tokenizer = _hf_tokenizer(transformers, folder, min(128, positions or 128))
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None and tokenizer is not None:
        pad = getattr(tokenizer.backend, "pad_token_id", None)
    wrapped = HuggingFaceClassifier(model, pad_token_id=pad)
    notes = [f"{type(model).__name__} ({config_data.get('model_type', '?')}), loaded offline"]
    if tokenizer is None:
        notes.append("no tokenizer files in the folder: give token ids (.pt/.npz) as data")
    id2label = getattr(model.config, "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label))]
    named = labels and not all(re.fullmatch(r"LABEL_\d+", label) for label in labels)
    if named:
        notes.append(f"classes from config.json: {', '.join(labels[:10])}")
    return LoadedModel.of(
        wrapped,
        "huggingface",
        src,
        input_kind="text" if tokenizer is not None else None,
        input_dtype=torch.int64,
        tokenizer=tokenizer,
        class_names=tuple(labels) if named else (),
        notes=tuple(notes),
        warnings=("pickled weights loaded because you trusted the folder",)
        if pickled and not safetensors
        else (),
    )


class HuggingFaceClassifier(nn.Module):
    """A Hugging Face model as one tensor in, logits out: token ids -> (batch, classes)."""

    def __init__(self, model: nn.Module, pad_token_id: int | None) -> None:
        super().__init__()
        self.model = model
        self.pad_token_id = pad_token_id

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = None if self.pad_token_id is None else (input_ids != self.pad_token_id).long()
        output = self.model(input_ids=input_ids, attention_mask=mask)
        logits = getattr(output, "logits", None)
        if logits is None:
            logits = output.last_hidden_state[:, 0]  # a bare encoder: its first token's state
        return logits


@dataclass(frozen=True)
class _HFTokenize:
    backend: Any
    max_length: int

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        encoded = self.backend(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return encoded["input_ids"]


def _hf_tokenizer(transformers: Any, folder: Path, max_length: int = 128) -> _HFTokenize | None:
    files = {"tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json"}
    if not files & {p.name for p in folder.iterdir()}:
        return None
    try:
        backend = transformers.AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception:  # noqa: BLE001 - no usable tokenizer: token ids must come as data
        return None
    limit = getattr(backend, "model_max_length", max_length)
    return _HFTokenize(backend, min(max_length, limit if isinstance(limit, int) else max_length))
