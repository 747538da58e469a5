"""The demo zoo: every shipped model loads, without training, and reproduces its stored metrics."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from workbench.evaluate.metrics import compute_metrics
from workbench.models import Demo, list_demos, load_demo
from workbench.models.architectures import ARCHITECTURES
from workbench.models.demos import ZOO_DIR

# Samples in each source dataset, independent of the zoo files.
DATASET_SIZES = {"digits": 1797, "breast_cancer": 569, "diabetes": 442, "mnist1d": 5000}


def _spec(name: str) -> dict:
    return json.loads((ZOO_DIR / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=list_demos())
def demo(request: pytest.FixtureRequest) -> Demo:
    return load_demo(request.param)


def test_list_demos_starts_with_default() -> None:
    names = list_demos()
    assert names[0] == "digits-cnn"
    assert len(names) == len(set(names)) == 5


def test_demo_loads_in_eval_mode(demo: Demo) -> None:
    assert isinstance(demo.model, nn.Module)
    assert not demo.model.training
    assert all(not m.training for m in demo.model.modules())
    assert demo.task == demo.meta.task
    assert demo.meta.name == demo.name
    assert demo.meta.architecture == type(demo.model).__name__


def test_dense_metrics_match_metadata(demo: Demo) -> None:
    x, y = demo.val.tensors
    with torch.no_grad():
        outputs = torch.cat([demo.model(x[i : i + 512]) for i in range(0, len(x), 512)])
    metrics = compute_metrics(demo.task, outputs, y, outputs)
    stored = demo.meta.dense_metrics
    assert metrics.keys() == stored.keys()
    for key, value in stored.items():
        if key in ("accuracy", "top5_accuracy", "agreement"):
            assert metrics[key] == value, key
        else:
            assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def test_datasets_match_metadata(demo: Demo) -> None:
    meta = demo.meta
    assert len(demo.train) == meta.n_train and len(demo.val) == meta.n_val
    for data in (demo.train, demo.val):
        x, y = data.tensors
        assert tuple(x.shape[1:]) == meta.input_shape
        assert x.dtype == torch.float32
        if meta.task == "classification":
            assert y.dtype == torch.int64
            assert int(y.min()) >= 0 and int(y.max()) < len(meta.class_names)
        else:
            assert y.dtype == torch.float32 and y.ndim == 1


def test_output_size_matches_class_names(demo: Demo) -> None:
    x = demo.val.tensors[0][:3]
    with torch.no_grad():
        out = demo.model(x)
    if demo.task == "classification":
        assert out.shape == (3, len(demo.meta.class_names))
    else:
        assert out.shape == (3,)
        assert demo.meta.class_names == ()
        assert demo.meta.target_name


def test_params_and_feature_names(demo: Demo) -> None:
    assert demo.meta.params == sum(p.numel() for p in demo.model.parameters())
    if demo.meta.input_kind == "tabular":
        assert len(demo.meta.feature_names) == demo.meta.input_shape[0]
    else:
        assert demo.meta.feature_names == ()


@pytest.mark.parametrize("name", list_demos())
def test_split_indices_disjoint_and_complete(name: str) -> None:
    spec = _spec(name)
    size = DATASET_SIZES[spec["data_source"]]
    assert spec["n_train"] + spec["n_val"] == size
    if spec["data_source"] == "mnist1d":  # split stored as arrays, not indices
        return
    train, val = set(spec["train_indices"]), set(spec["val_indices"])
    assert not train & val
    assert train | val == set(range(size))
    assert len(train) == spec["n_train"] and len(val) == spec["n_val"]


def test_digits_demos_share_one_split() -> None:
    cnn, mlp = _spec("digits-cnn"), _spec("digits-mlp")
    assert cnn["val_indices"] == mlp["val_indices"]
    assert cnn["train_indices"] == mlp["train_indices"]


def test_loading_does_not_train(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("loading a demo must not train")

    monkeypatch.setattr(torch.optim.Optimizer, "step", refuse)
    monkeypatch.setattr(torch.Tensor, "backward", refuse)
    for name in list_demos():
        assert load_demo(name).name == name


def test_each_load_returns_a_fresh_model() -> None:
    first, second = load_demo("digits-cnn"), load_demo("digits-cnn")
    assert first.model is not second.model
    with torch.no_grad():
        next(first.model.parameters()).zero_()
    assert next(second.model.parameters()).abs().sum() > 0
    first.val.tensors[0].zero_()
    assert second.val.tensors[0].abs().sum() > 0


def test_unknown_demo_lists_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        load_demo("no-such-demo")
    for name in list_demos():
        assert name in str(info.value)


def test_zoo_is_small() -> None:
    total = sum(p.stat().st_size for p in ZOO_DIR.iterdir() if p.is_file())
    assert total < 5 * 1024 * 1024


@pytest.mark.parametrize("cls", ARCHITECTURES.values(), ids=list(ARCHITECTURES))
def test_architectures_are_fx_traceable(cls: type[nn.Module]) -> None:
    model = cls().eval()
    traced = torch.fx.symbolic_trace(model)
    specs = [_spec(name) for name in list_demos()]
    shape = next(s["input_shape"] for s in specs if s["architecture"] == cls.__name__)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
