"""Load the trained demo models shipped in `zoo/`, with the exact datasets they were trained on.

Each demo is `zoo/<name>.json` (metadata, split indices, feature scaling) plus
`zoo/<name>.safetensors` (weights and buffers). The datasets are rebuilt from scikit-learn's
bundled files, or from `zoo/mnist1d-data.safetensors`, so loading never downloads and never trains.
`minilm-topics` is a pretrained encoder from an installed package (`models.text`) with a trained
head (the only weights in the zoo) and its texts in `zoo/minilm-topics-data.json`.
`scripts/train_demos.py` writes the zoo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from workbench.models.architectures import ARCHITECTURES
from workbench.models.info import ModelInfo

__all__ = [
    "MNIST1D_FILE",
    "ZOO_DIR",
    "Demo",
    "DemoMeta",
    "build_datasets",
    "list_demos",
    "load_demo",
]

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
MNIST1D_FILE = ZOO_DIR / "mnist1d-data.safetensors"

# A fixed, friendly order: the first demo is the app's default.
_DEMO_NAMES = ("digits-cnn", "digits-mlp", "mnist1d-cnn", "tabular-mlp", "diabetes-regressor")
#: A real pretrained model (22.6M parameters: seconds to load, not milliseconds): offered after
#: the small ones, with the larger demos.
_PRETRAINED_NAMES = ("minilm-topics",)


@dataclass(frozen=True)
class DemoMeta:
    """What the zoo's JSON says about a demo (split indices and scaling stay private)."""

    name: str
    title: str
    description: str
    architecture: str
    task: str  # "classification" | "regression"
    input_kind: str  # "image" | "signal" | "tabular" | "text"
    input_shape: tuple[int, ...]  # per sample
    class_names: tuple[str, ...]  # empty for regression
    feature_names: tuple[str, ...]  # tabular only
    target_name: str  # regression only
    dataset: str
    n_train: int
    n_val: int
    params: int
    seed: int
    # Dicts are unhashable: leave them out of the generated __hash__.
    dense_metrics: dict[str, float] = field(hash=False)
    training: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Demo:
    """A trained demo model in eval mode with its training and validation data."""

    name: str
    model: nn.Module
    train: TensorDataset  # (input, target)
    val: TensorDataset
    meta: DemoMeta
    #: A text demo's tokenizer: texts -> token ids, and ids back to tokens (`models.text`).
    tokenizer: Any = field(default=None, repr=False, compare=False)

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def info(self) -> ModelInfo:
        return _info(self.meta)


def _info(m: DemoMeta) -> ModelInfo:
    """The ModelInfo of a demo: its meta's fields of the same names (every one of ModelInfo's)."""
    return ModelInfo(**{f.name: getattr(m, f.name) for f in fields(ModelInfo)})


#: Built from seeds at load time (seconds, not milliseconds): offered last, for trying scale.
_SYNTHETIC_NAMES = ("scale-resnet",)


def list_demos(include_synthetic: bool = False) -> list[str]:
    """Names of the small trained demos, the default first; with `include_synthetic` the larger
    ones after them: the pretrained text model and the synthetic scale workload."""
    larger = list(_PRETRAINED_NAMES + _SYNTHETIC_NAMES)
    return list(_DEMO_NAMES) + (larger if include_synthetic else [])


def load_demo(name: str) -> Demo:
    """Load a demo's model (a fresh object each call) and rebuild its datasets."""
    if name == "scale-resnet":
        return _scale_demo()
    if name in _PRETRAINED_NAMES:
        return _text_demo(_read_spec(name))
    if name not in _DEMO_NAMES:
        valid = ", ".join(_DEMO_NAMES + _PRETRAINED_NAMES + _SYNTHETIC_NAMES)
        raise ValueError(f"unknown demo {name!r}; valid names: {valid}")
    spec = _read_spec(name)
    model = ARCHITECTURES[spec["architecture"]]()
    model.load_state_dict(load_file(ZOO_DIR / f"{name}.safetensors"), strict=True)
    model.eval()
    train, val = build_datasets(spec)
    return Demo(name=name, model=model, train=train, val=val, meta=_meta(spec))


@cache
def demo_info(name: str) -> ModelInfo:
    """What the app shows about a demo, without loading its model or data (milliseconds)."""
    if name == "scale-resnet":
        return _SCALE_INFO
    if name not in _DEMO_NAMES + _PRETRAINED_NAMES:
        raise ValueError(f"unknown demo {name!r}; valid names: {', '.join(list_demos(True))}")
    return _info(_meta(_read_spec(name)))


_SCALE_INFO = ModelInfo(
    name="scale-resnet",
    title="Synthetic ResNet (1.3M params, scale test)",
    description=(
        "A ResNet-18-shaped CNN with seeded random weights on 2,000 synthetic 32x32 colour "
        "images, labelled by its own predictions with 20% noise: not a trained model, but "
        "the size of a real one, to feel how fast the workbench is at scale."
    ),
    task="classification",
    input_kind="image",
    input_shape=(3, 32, 32),
    class_names=tuple(str(i) for i in range(10)),
    dataset="Synthetic: seeded smooth random images (no download)",
    n_val=2000,
)


def _scale_demo() -> Demo:
    from workbench.models.synthetic import scale_workload

    model, (inputs, labels) = scale_workload(samples=_SCALE_INFO.n_val)
    with torch.no_grad():
        accuracy = torch.cat([model(b) for b in inputs.split(512)]).argmax(1) == labels
    i = _SCALE_INFO
    meta = DemoMeta(
        name=i.name,
        title=i.title,
        description=i.description,
        architecture="ScaleResNet",
        task=i.task,
        input_kind=i.input_kind,
        input_shape=tuple(inputs.shape[1:]),
        class_names=i.class_names,
        feature_names=(),
        target_name="",
        dataset=i.dataset,
        n_train=0,
        n_val=len(labels),
        params=sum(p.numel() for p in model.parameters()),
        seed=0,
        dense_metrics={"accuracy": accuracy.double().mean().item()},
        training={},
    )
    data = TensorDataset(inputs, labels)
    return Demo(
        name="scale-resnet",
        model=model,
        train=TensorDataset(inputs[:0], labels[:0]),
        val=data,
        meta=meta,
    )


def _text_demo(spec: dict[str, Any]) -> Demo:
    """The pretrained encoder from its package, the zoo's head on it, the zoo's texts."""
    from workbench.models import text  # transformers is imported only for this demo

    encoder = spec["encoder"]
    folder = text.package_folder(encoder["package"], encoder["folder"])
    built = text.load_folder(folder, max_length=encoder["max_length"])
    model = text.SentenceClassifier(built.model, len(spec["class_names"]))
    head = load_file(ZOO_DIR / f"{spec['name']}.safetensors")
    model.head.load_state_dict({k.removeprefix("head."): v for k, v in head.items()})
    model.eval()
    train, val = build_text_datasets(spec, built.tokenizer)
    return Demo(spec["name"], model, train, val, _meta(spec), tokenizer=built.tokenizer)


def build_text_datasets(
    spec: dict[str, Any], tokenizer: Any
) -> tuple[TensorDataset, TensorDataset]:
    """A text demo's (train, validation) token ids and labels, tokenized as its model reads
    them: each split padded to its longest text."""
    data = json.loads((ZOO_DIR / spec["data_source"]).read_text(encoding="utf-8"))

    def split(part: str) -> TensorDataset:
        labels = torch.tensor(data[f"{part}_labels"], dtype=torch.int64)
        return TensorDataset(tokenizer(data[f"{part}_texts"]), labels)

    return split("train"), split("val")


def text_examples(name: str) -> list[str]:
    """A text demo's validation texts, in the order of its validation set."""
    spec = _read_spec(name)
    data = json.loads((ZOO_DIR / spec["data_source"]).read_text(encoding="utf-8"))
    return list(data["val_texts"])


def _read_spec(name: str) -> dict[str, Any]:
    return json.loads((ZOO_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _meta(spec: dict[str, Any]) -> DemoMeta:
    """DemoMeta's fields of a spec (which holds more), JSON lists as tuples, dicts copied."""

    def value(name: str) -> Any:
        raw = spec[name]
        return tuple(raw) if isinstance(raw, list) else dict(raw) if isinstance(raw, dict) else raw

    return DemoMeta(**{f.name: value(f.name) for f in fields(DemoMeta)})


# --- datasets ---------------------------------------------------------------------------------
# Shared with scripts/train_demos.py so that training and loading see bit-identical tensors.


@cache
def _sklearn_arrays(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw (features, targets) of a scikit-learn bundled dataset; cached, never mutate them."""
    from sklearn import datasets  # imported lazily: it is slow and only demos need it

    if source == "digits":
        bunch = datasets.load_digits()
    elif source == "breast_cancer":
        bunch = datasets.load_breast_cancer()
    elif source == "diabetes":
        bunch = datasets.load_diabetes(scaled=False)
    else:
        raise ValueError(f"unknown scikit-learn source {source!r}")
    return bunch.data, bunch.target


@lru_cache(maxsize=1)
def _mnist1d_tensors() -> dict[str, torch.Tensor]:
    return load_file(MNIST1D_FILE)


def build_datasets(spec: dict[str, Any]) -> tuple[TensorDataset, TensorDataset]:
    """The (train, validation) datasets that a demo's JSON spec describes."""
    source = spec["data_source"]
    shape = (-1, *spec["input_shape"])
    if source == "mnist1d":
        data = _mnist1d_tensors()
        # clone(): the cached tensors must not be shared with (and mutated by) callers.
        return (
            TensorDataset(data["x_train"].reshape(shape).clone(), data["y_train"].clone()),
            TensorDataset(data["x_val"].reshape(shape).clone(), data["y_val"].clone()),
        )

    x, y = _sklearn_arrays(source)
    if source == "digits":
        x = x / 16.0  # pixel intensities 0..16 -> 0..1
    else:
        # Train-split statistics in float64, stored as repr-exact JSON floats.
        x = (x - np.asarray(spec["feature_mean"])) / np.asarray(spec["feature_std"])
    target_dtype = torch.int64 if spec["task"] == "classification" else torch.float32

    def subset(indices: list[int]) -> TensorDataset:
        idx = np.asarray(indices, dtype=np.int64)
        inputs = torch.from_numpy(x[idx].astype(np.float32)).reshape(shape)
        return TensorDataset(inputs, torch.as_tensor(y[idx]).to(target_dtype))

    return subset(spec["train_indices"]), subset(spec["val_indices"])
