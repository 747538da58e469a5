"""A format registered in one place is picked up by load_model / load_data."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import workbench.io as wio
from workbench.io.data import DATA_REGISTRY, register_data_format
from workbench.io.models import MODEL_FORMATS, register_model_format


@dataclass(frozen=True)
class _Fake:
    name: str = "fake"
    label: str = "a fake model file"

    def sniff(self, head: bytes) -> bool:
        return head.startswith(b"FAKEMODEL")

    def load(self, src, options) -> wio.LoadedModel:
        model = nn.Linear(int(src.read()[len(b"FAKEMODEL") :]), 2)
        return wio.LoadedModel(model=model, format=self.name, source=src.name, params=8)


@pytest.fixture
def fake():
    register_model_format(_Fake())
    yield
    MODEL_FORMATS.unregister("fake")
    wio.FORMATS.pop("fake", None)


def test_a_registered_model_format_is_detected_and_loaded(fake) -> None:
    loaded = wio.load_model(b"FAKEMODEL3", name="m.fake")
    assert loaded.format == "fake" and loaded.format_label == "a fake model file"
    assert loaded.model(torch.ones(1, 3)).shape == (1, 2)
    assert not loaded.model.training  # load_model's common steps still apply
    assert wio.load_model(b"FAKEMODEL3", name="m.fake", kind="fake").format == "fake"


def test_without_it_the_bytes_are_refused(fake) -> None:
    MODEL_FORMATS.unregister("fake")
    with pytest.raises(wio.FormatError):
        wio.load_model(b"FAKEMODEL3", name="m.fake")


def test_builtin_formats_are_in_the_registry() -> None:
    names = {f.name for f in MODEL_FORMATS}
    assert {"export", "torchscript", "safetensors", "huggingface", "torch"} <= names


@dataclass(frozen=True)
class _FakeData:
    name: str = "fakedata"
    label: str = "a fake data file"

    def sniff(self, head: bytes) -> bool:
        return head.startswith(b"FAKEDATA")

    def load(self, src, options) -> wio.LoadedData:
        n = options.n if options is not None else 4
        info = wio.DataInfo(source=src.name, format=self.name, input_kind="other", n=n, n_total=n)
        return wio.LoadedData(inputs=torch.zeros(n, 3), targets=None, info=info)


@dataclass(frozen=True)
class _FakeOptions:
    n: int = 4


def test_a_registered_data_format_is_detected_and_loaded() -> None:
    register_data_format(_FakeData(), _FakeOptions)
    try:
        data = wio.load_data(b"FAKEDATA,a,b", name="d.csv")  # sniffed before the CSV rules
        assert data.info.format == "fakedata" and data.inputs.shape == (4, 3)
        data = wio.load_data(b"FAKEDATA", name="d.fake", options=_FakeOptions(n=6), max_samples=2)
        assert data.info.n == 2  # load_data's common steps still apply
    finally:
        DATA_REGISTRY.unregister("fakedata")
        wio.DATA_FORMATS.pop("fakedata", None)
    assert wio.load_data(b"FAKEDATA,a,b\n1,2,3\n", name="d.csv").info.format == "csv"


def test_keywords_reach_each_formats_options() -> None:
    data = wio.load_data(b"x,y,label\n1,2,a\n3,4,b\n", name="t.csv", target="label",
                         ignore=["y"], class_names=["b", "a"], image_size=8)  # fmt: skip
    assert data.info.feature_names == ("x",) and data.targets.tolist() == [1, 0]
    options = wio.CsvOptions(target="label", ignore=("y",), class_names=("b", "a"))
    again = wio.load_data(b"x,y,label\n1,2,a\n3,4,b\n", name="t.csv", options=options)
    assert again.info == data.info and torch.equal(again.inputs, data.inputs)
