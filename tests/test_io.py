"""Bring your own model and data: real files in a temporary folder give the original numbers.

Every model format (torch.export, TorchScript, safetensors + factory, a state dict) and data
format (.npz, .pt, CSV, a zip of image folders, text) is written from a trained demo, loaded
through the API and the CLI, and must give exactly the numbers of the demo itself: the same
weights on the same samples run the same kernels, so there is no tolerance anywhere. Bad files
(truncated, corrupt, malicious, oversized) must give a precise exception, and a crafted pickle
must not run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save, save_file
from torch import nn

import workbench as wb
import workbench.io as wio
from tests.helpers import Evil, export, one_thread
from workbench.io import (
    ArchitectureError,
    CheckError,
    DataError,
    FormatError,
    Limits,
    MissingDependencyError,
    SizeLimitError,
    UnsafeFileError,
)

ROOT = Path(__file__).resolve().parents[1]
ARCH = """
from workbench.models.architectures import DiabetesRegressor, DigitsCNN

def build():
    return DigitsCNN()

def seven_classes():
    return DigitsCNN(n_classes=7)

def diabetes():
    return DiabetesRegressor()

def broken():
    raise RuntimeError("needs a GPU")
"""
# Plans that exercise every path of the engine: magnitude, gradients, activations, structure.
PLANS = [
    wb.PruningPlan({"features.2": 0.5, "classifier.1": 0.8}),
    wb.PruningPlan(
        {"features.0": 0.3, "classifier.1": 0.5}, method="taylor", granularity="channel"
    ),
    wb.PruningPlan({"features.2": 0.5, "classifier.3": 0.5}, method="wanda", granularity="2:4"),
]


def image_zip(x: torch.Tensor, y: torch.Tensor, path: Path) -> list[int]:
    """Digits as 8-bit PNGs in class folders; pixel k/16 is stored as 15k (k = 0..16).

    Returns the order the loader reads them in (class folder, then file name).
    """
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(len(x)):
            levels = (x[i, 0] * 16).round().to(torch.uint8).numpy()
            buffer = io.BytesIO()
            Image.fromarray(levels * 15, mode="L").save(buffer, format="PNG")
            archive.writestr(f"digits/{int(y[i])}/{i:04d}.png", buffer.getvalue())
    return sorted(range(len(y)), key=lambda i: (int(y[i]), i))


@pytest.fixture(scope="module")
def demos() -> dict[str, wb.Demo]:
    return {n: wb.load_demo(n) for n in ("digits-cnn", "tabular-mlp", "diabetes-regressor")}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, demos: dict[str, wb.Demo]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("byo")
    digits, tab, diabetes = demos["digits-cnn"], demos["tabular-mlp"], demos["diabetes-regressor"]
    x, y = digits.val.tensors
    f = {name: folder / name for name in (
        "digits.pt2", "digits_static.pt2", "digits_decomposed.pt2", "digits_script.pt",
        "digits_traced.pt", "digits.safetensors", "digits_state.pth", "arch.py", "val.npz",
        "val.pt", "inputs_only.npz", "digits.zip", "tab.pt2", "tab.csv", "plan.json",
        "diabetes.safetensors", "diabetes.csv",
    )}  # fmt: skip
    export(digits.model, x[:2], f["digits.pt2"])
    export(digits.model, x[:2], f["digits_static.pt2"], dynamic=False)
    decomposed = torch.export.export(
        digits.model, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},)
    ).run_decompositions()
    torch.export.save(decomposed, f["digits_decomposed.pt2"])
    torch.jit.script(digits.model).save(f["digits_script.pt"])
    torch.jit.trace(digits.model, x[:2]).save(f["digits_traced.pt"])
    save_file(digits.model.state_dict(), f["digits.safetensors"])
    # A training checkpoint as people save them: DataParallel's prefix, inside a dict.
    state = {f"module.{k}": v for k, v in digits.model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, f["digits_state.pth"])
    f["arch.py"].write_text(ARCH)
    np.savez(f["val.npz"], inputs=x.numpy(), targets=y.numpy())
    torch.save({"inputs": x, "targets": y}, f["val.pt"])
    np.savez(f["inputs_only.npz"], x=x.numpy())
    f["order"] = image_zip(x, y, f["digits.zip"])  # type: ignore[assignment]

    xt, yt = tab.val.tensors
    export(tab.model, xt[:2], f["tab.pt2"])
    frame = pd.DataFrame(xt.double().numpy(), columns=list(tab.meta.feature_names))
    frame["target"] = yt.numpy()
    frame.to_csv(f["tab.csv"], index=False)
    f["plan.json"].write_text(PLANS[0].replace(sparsity={"net.0": 0.5, "net.2": 0.7}).to_json())

    xd, yd = diabetes.val.tensors
    save_file(diabetes.model.state_dict(), f["diabetes.safetensors"])
    frame = pd.DataFrame(xd.double().numpy(), columns=list(diabetes.meta.feature_names))
    frame.insert(0, "progression", yd.numpy())  # the target first, and named unusually
    frame.to_csv(f["diabetes.csv"], index=False)
    return f


@pytest.fixture(scope="module")
def refs(demos: dict[str, wb.Demo]) -> dict[str, wb.Workbench]:
    with one_thread():
        return {name: wb.Workbench(d.model, d.val) for name, d in demos.items()}


def assert_same(bench: wb.Workbench, ref: wb.Workbench, plans=PLANS, whole=False) -> None:
    """Same numbers. `whole`: a model the engine runs whole (TorchScript) cannot show which later
    layers read a removed channel, so a channel plan's sizes are an upper bound, and it says so."""
    assert bench.layer_names == ref.layer_names
    assert bench.dense_metrics == ref.dense_metrics
    assert bench.dense_size == ref.dense_size
    for plan in plans:
        report, expected = bench.evaluate(plan), ref.evaluate(plan)
        assert report.metrics == expected.metrics, plan
        if whole and plan.granularity == "channel" and plan.sparsity:
            assert any("runs as a whole" in note for note in report.notes), plan
            assert report.size["nonzero_params"] >= expected.size["nonzero_params"], plan
        else:
            assert report.size == expected.size, plan
        masks, expected_masks = bench.masks(plan), ref.masks(plan)
        assert all(torch.equal(masks[k], expected_masks[k]) for k in expected_masks), plan


# ---- every format gives the original model's numbers ------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "architecture"),
    [
        ("digits.pt2", "export", None),
        ("digits_decomposed.pt2", "export", None),
        ("digits_script.pt", "torchscript", None),
        ("digits_traced.pt", "torchscript", None),
        ("digits.safetensors", "safetensors", "arch.py:build"),
        ("digits_state.pth", "state_dict", "arch.py:build"),
    ],
)
def test_every_model_format_gives_the_demo_numbers(files, refs, name, fmt, architecture) -> None:
    arch = f"{files['arch.py'].parent}/{architecture}" if architecture else None
    loaded = wio.load_model(files[name], architecture=arch)
    assert loaded.format == fmt
    assert loaded.params == sum(p.numel() for p in wb.load_demo("digits-cnn").model.parameters())
    data = wio.load_data(files["val.npz"])
    with one_thread():
        bench = wio.run_build(loaded, data).bench
        assert_same(bench, refs["digits-cnn"], whole=fmt == "torchscript")
    if name == "digits_state.pth":
        assert any("'state_dict' entry" in n for n in loaded.notes)
        assert any("prefix 'module.'" in n for n in loaded.notes)


def test_a_pruned_export_program_equals_the_pruned_original(files, refs, demos) -> None:
    bench = wio.run_build(wio.load_model(files["digits.pt2"]), wio.load_data(files["val.pt"])).bench
    x = demos["digits-cnn"].val.tensors[0]
    for plan in PLANS:
        mine, theirs = bench.pruned_model(plan), refs["digits-cnn"].pruned_model(plan)
        with torch.no_grad():
            assert torch.equal(mine(x), theirs(x))
        assert torch.equal(bench.outputs(plan), refs["digits-cnn"].outputs(plan))


def test_scripted_layers_are_found_by_their_original_names(files, refs) -> None:
    scripted = torch.jit.load(files["digits_script.pt"])
    layers = wb.find_prunable_layers(scripted)
    assert [(la.name, la.kind, la.shape) for la in layers] == [
        (la.name, la.kind, la.shape) for la in refs["digits-cnn"].prunable_layers
    ]


def test_a_fixed_batch_program_runs_whole_batches(files, demos) -> None:
    loaded = wio.load_model(files["digits_static.pt2"])
    assert loaded.fixed_batch == 2 and loaded.input_shape == (1, 8, 8)
    data = wio.load_data(files["val.npz"], max_samples=41)
    with one_thread():  # batches of 2 are many small kernel calls
        done = wio.run_build(loaded, data)
    assert len(done.bench.targets) == 40  # whole batches of 2 keep 40 of 41 samples
    assert any("kept 40 of 41" in f.message for f in done.report.findings)
    x, y = data.inputs[:40], data.targets[:40]
    with one_thread():
        ref = wb.Workbench(demos["digits-cnn"].model, (x, y), batch_size=2)
    assert done.bench.dense_metrics == ref.dense_metrics
    assert done.bench.dense_size == ref.dense_size  # FLOPs counted per sample from a batch


def test_image_folder_zip_gives_the_demo_pixels_and_numbers(files, demos) -> None:
    # 15k / 255 / (16/17) = k/16: computed in float64, then float32, exactly the demo's pixels.
    data = wio.load_data(files["digits.zip"], std=16 / 17)
    x, y = demos["digits-cnn"].val.tensors
    order = files["order"]
    assert torch.equal(data.inputs, x[order]) and torch.equal(data.targets, y[order])
    assert data.info.class_names == tuple(str(i) for i in range(10))
    with one_thread():
        bench = wio.run_build(wio.load_model(files["digits.pt2"]), data).bench
        assert_same(bench, wb.Workbench(demos["digits-cnn"].model, (x[order], y[order])))
    preview = wio.preview_images(data, 4)
    assert [label for _, label in preview] == ["0", "1", "2", "3"]  # one image of each class
    first = preview[0][0]
    assert first.shape == (8, 8, 3) and first.dtype == np.uint8
    # Normalisation undone: the preview shows the PNG's own pixels, 15k.
    stored = ((x[order][0, 0] * 16).round() * 15).numpy().astype(np.uint8)
    assert np.array_equal(first[..., 0], stored) and np.array_equal(first[..., 2], stored)


def test_image_options_resize_channels_and_normalise(files) -> None:
    data = wio.load_data(files["digits.zip"], image_size=(4, 6), channels=3, mean=0.5, std=0.25)
    assert data.inputs.shape == (359, 3, 4, 6)
    assert torch.equal(data.inputs[:, 0], data.inputs[:, 2])  # grayscale repeated as RGB
    assert data.inputs.min() >= -2 and data.inputs.max() <= 2  # (0..1 - 0.5) / 0.25
    with pytest.raises(DataError, match="std has 2 values for 3-channel images"):
        wio.load_data(files["digits.zip"], channels=3, std=(0.5, 0.5))


def test_data_files_hold_the_demo_tensors(files, demos) -> None:
    x, y = demos["digits-cnn"].val.tensors
    for name in ("val.npz", "val.pt"):
        data = wio.load_data(files[name])
        assert torch.equal(data.inputs, x) and torch.equal(data.targets, y)
        assert data.info.input_kind == "image" and data.info.n == len(x)
    data = wio.load_data(save({"x_val": x, "y_val": y}), name="val.safetensors")
    assert data.info.format == "safetensors" and torch.equal(data.targets, y)
    single = io.BytesIO()
    np.save(single, x.numpy())
    data = wio.load_data(single.getvalue(), name="inputs.npy")
    assert torch.equal(data.inputs, x) and data.targets is None
    xt, yt = demos["tabular-mlp"].val.tensors
    data = wio.load_data(files["tab.csv"])
    assert torch.equal(data.inputs, xt) and torch.equal(data.targets, yt)
    assert data.info.target_name == "target"
    assert data.info.feature_names == demos["tabular-mlp"].meta.feature_names


def test_tabular_export_with_a_csv(files, refs) -> None:
    loaded = wio.load_model(files["tab.pt2"])
    with one_thread():
        bench = wio.run_build(loaded, wio.load_data(files["tab.csv"])).bench
        plans = [wb.PruningPlan.from_json(files["plan.json"].read_text())]
        assert_same(bench, refs["tabular-mlp"], plans)


def test_regression_targets_follow_the_model(files, refs) -> None:
    # Integer-valued progression scores look like labels; the model's single output says not.
    data = wio.load_data(files["diabetes.csv"], target="progression")
    assert data.targets.dtype == torch.int64
    model = wio.load_model(
        files["diabetes.safetensors"], architecture=f"{files['arch.py']}:diabetes"
    )
    with one_thread():
        done = wio.run_build(model, data)
        plan = wb.PruningPlan({"net.0": 0.5})
        assert done.bench.task == "regression" and done.bench.targets.dtype == torch.float32
        assert done.bench.dense_metrics == refs["diabetes-regressor"].dense_metrics
        assert (
            done.bench.evaluate(plan).metrics == refs["diabetes-regressor"].evaluate(plan).metrics
        )
    assert done.info.task == "regression" and done.info.class_names == ()


def test_label_free_data_compares_with_the_dense_model(files, refs, demos) -> None:
    data = wio.load_data(files["inputs_only.npz"])
    assert data.targets is None and not data.labelled
    x = demos["digits-cnn"].val.tensors[0]
    with one_thread():
        bench = wio.run_build(wio.load_model(files["digits.pt2"]), data).bench
        # Oracle: the same model labelled with its own dense predictions, which is what
        # label-free metrics (and taylor's loss) measure against.
        predictions = refs["digits-cnn"].dense_outputs.argmax(1)
        pseudo = wb.Workbench(demos["digits-cnn"].model, (x, predictions))
    assert not bench.labelled and bench.targets is None and bench.task == "classification"
    assert bench.dense_metrics["agreement"] == 1.0
    for plan in PLANS:
        report, expected = bench.evaluate(plan), pseudo.evaluate(plan)
        assert report.task == "classification-label-free"
        assert wb.PRIMARY_METRIC[report.task] == "agreement"
        assert set(report.metrics) == {"agreement", "loss"}
        assert report.metrics["agreement"] == expected.metrics["accuracy"]
        assert report.metrics["loss"] == expected.metrics["loss"]
        assert (report.confusion == expected.confusion).all()
    # Masks that use no targets are those of the labelled model.
    plan = PLANS[0]
    assert report.metrics != bench.dense_metrics
    assert (
        bench.evaluate(plan).metrics["agreement"]
        == refs["digits-cnn"].evaluate(plan).metrics["agreement"]
    )


def test_text_file_with_labels(tmp_path) -> None:
    torch.manual_seed(0)

    class Bag(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(257, 8, padding_idx=0)
            self.head = nn.Linear(8, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(ids).mean(dim=1))

    model = Bag().eval()
    lines = ["__label__pos a fine film", "__label__neg dull", "__label__meh so-so, déjà vu"] * 4
    (tmp_path / "reviews.txt").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    ids = wio.byte_tokenizer(32)([line.split(" ", 1)[1] for line in lines])
    export(model, ids[:2], tmp_path / "bag.pt2")
    data = wio.load_data(tmp_path / "reviews.txt", max_length=32)
    assert torch.equal(data.inputs, ids)
    assert data.info.class_names == ("meh", "neg", "pos")
    assert data.targets.tolist() == [2, 1, 0] * 4
    assert data.info.examples[2] == "so-so, déjà vu"
    bench = wio.run_build(wio.load_model(tmp_path / "bag.pt2"), data).bench
    assert bench.layer_names == ["head"]
    assert bench.dense_metrics == wb.Workbench(model, (ids, data.targets)).dense_metrics


def test_csv_categorical_targets_are_mapped_and_shown(tmp_path) -> None:
    path = tmp_path / "pets.csv"
    path.write_text("id,weight,height,kind\na,1.5,2,dog\nb,0.5,1,cat\nc,3,4.5,dog\nd,1,1,bird\n")
    with pytest.raises(DataError, match=r"not numeric: id \(e.g. 'a'\)"):
        wio.load_data(path, target="kind")
    data = wio.load_data(path, target="kind", ignore=["id"])
    assert data.info.class_names == ("bird", "cat", "dog")
    assert data.targets.tolist() == [2, 1, 2, 0]
    assert "dog → 2" in " ".join(data.info.notes)
    ordered = wio.load_data(path, target="kind", ignore=["id"], class_names=["dog", "cat", "bird"])
    assert ordered.targets.tolist() == [0, 1, 0, 2]
    with pytest.raises(DataError, match="not among the given classes.*bird"):
        wio.load_data(path, target="kind", ignore=["id"], class_names=["dog", "cat"])
    with pytest.raises(DataError, match="no column 'species'.*id, weight, height, kind"):
        wio.load_data(path, target="species")


def test_subsampling_is_seeded_and_stratified(files, demos) -> None:
    y = demos["digits-cnn"].val.tensors[1]
    a = wio.load_data(files["val.npz"], max_samples=100)
    b = wio.load_data(files["val.npz"], max_samples=100)
    c = wio.load_data(files["val.npz"], max_samples=100, seed=1)
    assert torch.equal(a.inputs, b.inputs) and not torch.equal(a.inputs, c.inputs)
    assert len(a.targets) == 100
    expected = torch.bincount(y, minlength=10).double() * 100 / len(y)
    counts = torch.bincount(a.targets, minlength=10).double()
    assert ((counts - expected).abs() < 1).all()  # largest-remainder shares of each class


def test_one_file_is_split_with_a_seed(files, demos) -> None:
    x, y = demos["digits-cnn"].val.tensors
    data = wio.load_data(files["val.npz"], val_fraction=0.25, seed=3)
    again = wio.load_data(files["val.npz"], val_fraction=0.25, seed=3)
    assert torch.equal(data.inputs, again.inputs)
    train_x, train_y = data.train
    assert len(data.inputs) == round(len(x) * 0.25) and len(train_x) + len(data.inputs) == len(x)
    rows = {tuple(r.flatten().tolist()) for r in data.inputs}
    assert not rows & {tuple(r.flatten().tolist()) for r in train_x}
    assert sorted(data.targets.tolist() + train_y.tolist()) == sorted(y.tolist())


# ---- the command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli(files: dict[str, Path], tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    marker = tmp_path_factory.mktemp("cli") / "PWNED"
    evil = marker.parent / "model.pt"
    torch.save(Evil(marker), evil)
    arch = f"{files['arch.py']}:build"
    commands = {
        "layers": ["layers", "--model", files["digits.pt2"], "--data", files["val.npz"], "--json"],
        "tab": ["evaluate", "--model", files["tab.pt2"], "--data", files["tab.csv"],
                "--plan", files["plan.json"]],
        "images": ["evaluate", "--model", files["digits.safetensors"], "--arch", arch,
                   "--data", files["digits.zip"]],
        "no-arch": ["evaluate", "--model", files["digits.safetensors"], "--data", files["val.npz"]],
        "evil": ["evaluate", "--model", evil, "--data", files["val.npz"]],
    }  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(args: list) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "workbench", *map(str, args)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {name: pool.submit(run, args) for name, args in commands.items()}
        results = {name: future.result() for name, future in futures.items()}
    results["marker"] = marker  # type: ignore[assignment]
    return results


def test_cli_lists_the_layers_of_an_export_program(cli, refs) -> None:
    run = cli["layers"]
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r["name"] for r in rows] == refs["digits-cnn"].layer_names
    assert [r["flops"] for r in rows] == list(refs["digits-cnn"].layers["flops"])
    assert "torch.export program" in run.stderr


def test_cli_evaluates_a_plan_on_a_csv_exactly(cli, refs, files) -> None:
    run = cli["tab"]
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    plan = wb.PruningPlan.from_json(files["plan.json"].read_text())
    with one_thread():
        report = refs["tabular-mlp"].evaluate(plan)
    assert out["metrics"] == report.metrics and out["size"] == report.size
    assert "error" not in run.stderr  # progress is drawn on a terminal only, not in a log


def test_cli_weights_with_architecture_on_images(cli, demos, files) -> None:
    run = cli["images"]
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    x, y = demos["digits-cnn"].val.tensors
    order = files["order"]
    # Without --std the pixels are 15k/255 (not the demo's k/16): compare on the same tensors.
    data = wio.load_data(files["digits.zip"])
    assert torch.equal(data.targets, y[order])
    with one_thread():
        ref = wb.Workbench(demos["digits-cnn"].model, data.val)
    assert out["dense_metrics"] == ref.dense_metrics


def test_cli_errors_are_one_line_and_no_pickle_runs(cli) -> None:
    for name, words in (
        ("no-arch", ["holds weights only", "path/to/file.py:factory"]),
        ("evil", ["pickled Python objects", "builtins.exec", "trust"]),
    ):
        run = cli[name]
        assert run.returncode == 2 and run.stdout == ""
        assert "Traceback" not in run.stderr
        assert all(w in run.stderr for w in words), run.stderr
    assert not cli["marker"].exists()


# ---- bad input -------------------------------------------------------------------------------------


def truncated(path: Path, tmp_path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    out = tmp_path / f"cut-{path.name}"
    out.write_bytes(data[: int(len(data) * keep)])
    return out


@pytest.mark.parametrize(
    ("name", "loader"),
    [
        ("digits.pt2", "model"),
        ("digits_script.pt", "model"),
        ("digits.safetensors", "model"),
        ("digits_state.pth", "model"),
        ("val.npz", "data"),
        ("val.pt", "data"),
        ("digits.zip", "data"),
    ],
)
def test_truncated_files_say_so(files, tmp_path, name, loader) -> None:
    path = truncated(files[name], tmp_path)
    load = wio.load_model if loader == "model" else wio.load_data
    with pytest.raises(FormatError, match="truncated|corrupt|not a readable|not a model file"):
        load(path, architecture=f"{files['arch.py']}:build") if loader == "model" else load(path)


def test_corrupt_and_unknown_files(files, tmp_path) -> None:
    noise = tmp_path / "model.pt2"
    noise.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(FormatError, match="not a model file we read.*found bytes 00 01 02"):
        wio.load_model(noise)
    text = tmp_path / "notes.pt"
    text.write_text("just some notes\n")
    with pytest.raises(FormatError, match="found text starting 'just some notes"):
        wio.load_model(text)
    # A .pt2 whose graph JSON was damaged: flip bytes inside models/model.json.
    source = zipfile.ZipFile(files["digits.pt2"])
    broken = tmp_path / "broken.pt2"
    with zipfile.ZipFile(broken, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("models/model.json"):
                data = data[:100] + b"\x00\xff" + data[102:]
            archive.writestr(info.filename, data)
    with pytest.raises(FormatError, match="not valid JSON"):
        wio.load_model(broken)
    with pytest.raises(FormatError, match="is empty"):
        wio.load_model(b"", name="empty.pt2")


def test_wrong_input_shape_and_dtype(files, demos) -> None:
    csv = wio.load_data(files["tab.csv"])
    with pytest.raises(
        CheckError, match=r"expects samples of shape 1×8×8; the data's samples have shape 30"
    ):
        wio.prepare(wio.load_model(files["digits.pt2"]), csv)
    report = wio.check(wio.load_model(files["digits_script.pt"]), csv)
    assert not report.ok
    message = report.errors[0].message
    assert "failed on a batch of shape 8×30 (float32)" in message
    x, y = demos["digits-cnn"].val.tensors
    raw = io.BytesIO()
    np.savez(raw, inputs=(x * 16).to(torch.int64).numpy(), targets=y.numpy())
    data = wio.load_data(raw.getvalue(), name="raw.npz")
    with pytest.raises(CheckError, match="expects float32 inputs; the data holds int64"):
        wio.prepare(wio.load_model(files["digits.pt2"]), data)


def test_labels_out_of_range_and_class_counts(files, demos) -> None:
    x, y = demos["digits-cnn"].val.tensors
    bad = io.BytesIO()
    np.savez(bad, inputs=x.numpy(), targets=(y + 1).numpy())  # labels 1..10 for 10 outputs
    with pytest.raises(
        CheckError,
        match="labels must be within 0..9 for a model with 10 outputs; found labels from 1 to 10",
    ):
        wio.prepare(
            wio.load_model(files["digits.pt2"]), wio.load_data(bad.getvalue(), name="b.npz")
        )
    floats = io.BytesIO()
    np.savez(floats, inputs=x.numpy(), targets=y.numpy() + 0.5)
    with pytest.raises(CheckError, match=r"not class indices \(e.g. \d\.5\)"):
        wio.prepare(
            wio.load_model(files["digits.pt2"]), wio.load_data(floats.getvalue(), name="f.npz")
        )


def test_empty_and_malformed_csv(tmp_path) -> None:
    cases = {
        "empty.csv": ("", "is empty"),
        "blank.csv": ("\n\n  \n", "is empty"),
        "header.csv": ("a,b,target\n", r"has a header \(a, b, target\) but no rows"),
        "holes.csv": ("a,b,target\n1,,0\n2,3,1\n", r"missing values in: b \(1\)"),
        "nolabel.csv": ("a,b,target\n1,2,\n2,3,1\n", "target column 'target' is empty on line"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(FormatError if not text else DataError, match=message):
            wio.load_data(tmp_path / name)


def evil_zip(path: Path, name: str, link: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        buffer = io.BytesIO()
        Image.new("L", (4, 4)).save(buffer, format="PNG")
        archive.writestr("cats/ok.png", buffer.getvalue())
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = 0o120777 << 16  # a symbolic link
        archive.writestr(info, buffer.getvalue() if not link else "/etc/passwd")
    return path


@pytest.mark.parametrize(
    ("member", "link", "message"),
    [
        ("../../escape.png", False, r"climbs out of its folder \('\.\.'\)"),
        ("cats/../../escape.png", False, "climbs out of its folder"),
        ("/etc/evil.png", False, "absolute path"),
        ("C:\\evil.png", False, "absolute path"),
        ("dogs/link.png", True, "symbolic link"),
    ],
)
def test_zip_entries_cannot_escape(tmp_path, member, link, message) -> None:
    path = evil_zip(tmp_path / "images.zip", member, link)
    with pytest.raises(UnsafeFileError, match=message):
        wio.load_data(path)
    assert not (tmp_path.parent / "escape.png").exists()


def test_size_caps(files, tmp_path) -> None:
    with pytest.raises(SizeLimitError, match="over the 0.0 MB limit"):
        wio.load_model(files["digits.pt2"], limits=Limits(max_file_bytes=1000))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros/a.png", bytes(40 << 20))  # 40 MB of zeros, ~40 KB stored
    assert bomb.stat().st_size < 200_000
    with pytest.raises(SizeLimitError, match=r"ratio [\d,]+:1, over the 100:1 limit"):
        wio.load_data(bomb)
    with pytest.raises(SizeLimitError, match="would decompress to 40.0 MB, over the 8.0 MB limit"):
        wio.load_data(bomb, limits=Limits(max_unpacked_bytes=8 << 20, max_ratio=1e9))


def test_malicious_pickles_never_run_unless_trusted(tmp_path) -> None:
    marker = tmp_path / "PWNED"
    model_file = tmp_path / "model.pt"
    torch.save(Evil(marker), model_file)
    raw = tmp_path / "model.pkl"
    raw.write_bytes(__import__("pickle").dumps(Evil(marker)))
    data_file = tmp_path / "data.pt"
    torch.save({"inputs": torch.zeros(2, 3), "targets": Evil(marker)}, data_file)
    for path in (model_file, raw):
        with pytest.raises(UnsafeFileError, match=r"pickled Python objects.*builtins\.exec"):
            wio.load_model(path)
    with pytest.raises(UnsafeFileError, match="Unpickling runs code"):
        wio.load_data(data_file)
    objects = io.BytesIO()
    np.savez(objects, inputs=np.array([Evil(marker)], dtype=object))
    with pytest.raises(UnsafeFileError, match="object array"):
        wio.load_data(objects.getvalue(), name="objects.npz")
    assert not marker.exists()
    # The positive control: trusting the file does run it, so the pickle above was real.
    with pytest.warns(UserWarning, match="ran any code"), pytest.raises(FormatError):
        wio.load_model(model_file, trust_pickle=True)  # it runs, then is no model
    assert marker.read_text() == "pwned"


def test_a_trusted_pickled_model_loads(tmp_path, files, demos, refs) -> None:
    path = tmp_path / "whole.pt"
    torch.save(demos["digits-cnn"].model, path)
    with pytest.raises(UnsafeFileError, match="workbench.models.architectures.DigitsCNN"):
        wio.load_model(path)
    with pytest.warns(UserWarning, match="ran any code"):
        loaded = wio.load_model(path, trust_pickle=True)
    assert loaded.format == "pickle" and "has run" in loaded.warnings[0]
    with one_thread():
        bench = wio.run_build(loaded, wio.load_data(files["val.npz"])).bench
    assert bench.dense_metrics == refs["digits-cnn"].dense_metrics


def tampered(source: Path, out: Path, edit) -> Path:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w") as archive:
        for info in original.infolist():
            archive.writestr(info.filename, edit(info.filename, original.read(info)))
    return out


def test_malicious_export_programs_are_refused(files, tmp_path) -> None:
    marker = tmp_path / "PWNED"
    payload = io.BytesIO()
    torch.save(Evil(marker), payload)
    command = f"__import__('os').system('touch {marker}')"

    def sample(name, data):
        return payload.getvalue() if name.endswith("sample_inputs/model.pt") else data

    def expression(name, data):
        if name.endswith("models/model.json"):
            return data.replace(b"Symbol('s", f"{command} or Symbol('s".encode(), 1)
        return data

    def guard(name, data):
        if name.endswith("models/model.json"):
            document = json.loads(data)
            document["guards_code"] = [f"{command} == 0"]
            return json.dumps(document).encode()
        return data

    def target(name, data):
        if name.endswith("models/model.json"):
            return data.replace(b'"torch.ops.aten.relu.default"', b'"torch.os.system"', 1)
        return data

    cases = {
        "sample": (sample, r"pickled Python objects.*builtins\.exec"),
        "expression": (expression, "a symbolic size in .*(uses the name|reads the attribute)"),
        "guard": (guard, "a guard in .*(uses the name|reads the attribute)"),
        "target": (target, "calls 'torch.os.system': only PyTorch operators"),
    }
    for name, (edit, message) in cases.items():
        path = tampered(files["digits.pt2"], tmp_path / f"{name}.pt2", edit)
        with pytest.raises(UnsafeFileError, match=message):
            wio.load_model(path)
        assert not marker.exists(), name
    # The positive control: torch's own loader runs these files' code.
    for name in ("sample", "expression"):
        with contextlib.suppress(Exception):
            torch.export.load(tmp_path / f"{name}.pt2")
        assert marker.exists(), name
        marker.unlink()


def test_architecture_problems_are_precise(files, tmp_path) -> None:
    arch = files["arch.py"]
    with pytest.raises(ArchitectureError, match=(
        r"do not fit arch.py:seven_classes: 2 mis-shaped keys \(classifier.3.weight: the "
        r"architecture expects 7×64, the file has 10×64; classifier.3.bias: the architecture "
        r"expects 7, the file has 10\)"
    )):  # fmt: skip
        wio.load_model(files["digits.safetensors"], architecture=f"{arch}:seven_classes")
    state = {k: v for k, v in wb.load_demo("digits-cnn").model.state_dict().items()}
    state["extra.weight"] = state.pop("classifier.3.weight")
    partial = tmp_path / "partial.safetensors"
    save_file(state, partial)
    with pytest.raises(ArchitectureError, match=(
        r"1 missing key \(classifier.3.weight\), 1 unexpected key \(extra.weight\)"
    )):  # fmt: skip
        wio.load_model(partial, architecture=f"{arch}:build")
    loose = wio.load_model(partial, architecture=f"{arch}:build", strict=False)
    assert loose.missing_keys == ("classifier.3.weight",)
    assert loose.unexpected_keys == ("extra.weight",)
    for spec, message in (
        (f"{arch}:nope", "has no function or class 'nope'; it defines: build, seven_classes"),
        (f"{arch}:broken", r"calling arch.py:broken\(\) raised RuntimeError: needs a GPU"),
        (f"{tmp_path}/missing.py:build", "does not exist"),
        ("build", "should be path/to/file.py:factory"),
    ):
        with pytest.raises(ArchitectureError, match=message):
            wio.load_model(files["digits.safetensors"], architecture=spec)


def test_nan_weights_and_no_prunable_layers_are_explained(files, demos, tmp_path) -> None:
    model = wb.load_demo("digits-cnn").model
    with torch.no_grad():
        model.features[2].weight[0, 0, 0, 0] = float("nan")
        model.classifier[3].bias[1] = float("inf")
    path = tmp_path / "nan.pt2"
    export(model, demos["digits-cnn"].val.tensors[0][:2], path)
    report = wio.check(wio.load_model(path), wio.load_data(files["val.npz"]))
    (weights,) = [f for f in report.findings if f.check == "weights"]
    assert weights.level == "error"
    assert "features.2.weight (1 NaN)" in weights.message
    assert "classifier.3.bias (1 infinite)" in weights.message

    norm_only = nn.Sequential(nn.Flatten(), nn.LayerNorm(64))
    loaded = wio.LoadedModel(model=norm_only, format="pickle", source="norm.pt", params=128)
    report = wio.check(loaded, wio.load_data(files["val.npz"]))
    (layers,) = [f for f in report.findings if f.check == "prunable layers"]
    assert layers.level == "error"
    assert "no prunable layers" in layers.message and "LayerNorm (1)" in layers.message


def test_missing_transformers_is_explained(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match="pip install -r requirements.txt"):
        wio.load_model(folder)
    with pytest.raises(FormatError, match="no config.json"):
        wio.load_model(tmp_path)


def test_hugging_face_folder_offline(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *["good", "bad", "film", "the", "was"]]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "reviews.txt").write_text(
        "__label__positive the film was good\n__label__negative bad film\n"
    )
    loaded = wio.load_model(tmp_path / "model")
    assert loaded.format == "huggingface" and loaded.class_names == ("negative", "positive")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    data = wio.load_data(
        tmp_path / "reviews.txt", tokenizer=loaded.tokenizer, class_names=loaded.class_names
    )
    assert data.targets.tolist() == [1, 0]
    bench = wio.run_build(loaded, data).bench
    with torch.no_grad():
        ids = data.inputs
        expected = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert torch.equal(bench.dense_outputs, expected)
    assert "model.classifier" in bench.layer_names
