"""A format registered in one place is picked up by load_model / load_data; the built-ins are
one class each, sniffed in the order the security rules fix."""

from collections.abc import Callable
from dataclasses import dataclass, is_dataclass

import pytest
import torch
from torch import nn

import workbench.io as wio
from workbench.io.data import DATA_REGISTRY, register_data_format
from workbench.io.models import MODEL_FORMATS, register_model_format


@dataclass(frozen=True)
class _Fake:
    """A format told by its magic bytes, loaded by `build(self, src, options)`."""

    name: str
    label: str
    magic: bytes
    build: Callable

    def sniff(self, head: bytes) -> bool:
        return head.startswith(self.magic)

    def load(self, src, options):
        return self.build(self, src, options)


def _fake_model(fmt: _Fake, src, options) -> wio.LoadedModel:
    model = nn.Linear(int(src.read()[len(fmt.magic) :]), 2)
    return wio.LoadedModel(model=model, format=fmt.name, source=src.name, params=8)


def _fake_data(fmt: _Fake, src, options) -> wio.LoadedData:
    n = options.n if options is not None else 4
    return wio.LoadedData.of(torch.zeros(n, 3), None, src, fmt.name, "other")


@pytest.fixture
def fake():
    register_model_format(_Fake("fake", "a fake model file", b"FAKEMODEL", _fake_model))
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


def test_a_model_format_without_options_gets_every_keyword(fake) -> None:
    seen = []
    register_model_format(
        _Fake(
            "fake",
            "a fake model file",
            b"FAKEMODEL",
            lambda *a: seen.append(a[2]) or _fake_model(*a),
        )
    )
    wio.load_model(b"FAKEMODEL3", name="m.fake", strict=False)
    assert seen == [wio.ModelOptions(strict=False, limits=wio.Limits.from_env())]


@dataclass(frozen=True)
class _FakeOptions:
    n: int = 4


def test_a_registered_data_format_is_detected_and_loaded() -> None:
    register_data_format(
        _Fake("fakedata", "a fake data file", b"FAKEDATA", _fake_data), _FakeOptions
    )
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


def test_given_options_load_under_their_own_limits_not_the_environment(monkeypatch) -> None:
    # options= is the whole load's settings: its limits (DEFAULT_LIMITS unless set), not the
    # WORKBENCH_MAX_* variables, which still cap reading the file.
    monkeypatch.setenv("WORKBENCH_MAX_COLUMNS", "2")
    table = b"x,y,label\n1,2,a\n3,4,b\n"
    with pytest.raises(wio.SizeLimitError, match="3 columns"):
        wio.load_data(table, name="t.csv")
    data = wio.load_data(table, name="t.csv", options=wio.CsvOptions(target="label"))
    assert data.inputs.shape == (2, 2)
    tight = wio.CsvOptions(target="label", limits=wio.Limits(max_columns=2))
    with pytest.raises(wio.SizeLimitError, match="3 columns"):
        wio.load_data(table, name="t.csv", options=tight)


def test_builtin_formats_are_sniffed_in_the_security_order() -> None:
    # A folder is only a Hugging Face folder; safetensors before the zips; a torch.save zip
    # after torch.export and TorchScript (both hold a data.pkl); a bare pickle last.
    assert [f.name for f in MODEL_FORMATS] == [
        "huggingface", "safetensors", "export", "torchscript", "torch",
    ]  # fmt: skip
    # Text named as text before the pickle sniff (a CSV may start like a protocol-0 pickle);
    # a torch.save zip before a zip of images.
    assert [f.name for f in DATA_REGISTRY] == [
        "npy", "safetensors", "npz", "csv", "text", "tensors", "images",
    ]  # fmt: skip


@pytest.mark.parametrize("registry", [MODEL_FORMATS, DATA_REGISTRY], ids=["model", "data"])
def test_every_builtin_is_one_object_with_its_own_options(registry) -> None:
    for fmt in registry:
        assert fmt.name and fmt.label and callable(fmt.sniff) and callable(fmt.load), fmt
        assert is_dataclass(fmt.Options), fmt.name
        assert registry.options(fmt.name, {}) == fmt.Options()  # every field has a default


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.csv", b"class,a,b\n0,1,2\n1,3,4\n", "csv"),  # starts like a protocol-0 pickle
        ("notes.txt", b"c\nhello\n", "text"),
        ("table.dat", b"a;b\n1;2\n3;4\n", "csv"),
        ("lines", b"just some words\nand more\n", "text"),
        ("raw.pt", b"(lp0\n.", "tensors"),  # a protocol-0 pickle named .pt
        ("upload", b"(lp0\n.", "tensors"),  # shaped like one, unnamed
        ("data.csv", b"\x80\x04\x95\x00\xff\xfe", "tensors"),  # not text: the content decides
    ],
)
def test_text_named_as_text_is_text_before_the_pickle_sniff(name, content, expected) -> None:
    src = wio.as_source(content, name=name)
    assert wio.detect_data_format(src) == expected
