"""`python -m workbench`: the same numbers as the library, and one clear line for a bad plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import workbench as wb
from tests.helpers import one_thread
from workbench.cli import main

ROOT = Path(__file__).resolve().parents[1]

GOOD_PLAN = {
    "sparsity": {"features.2": 0.5, "classifier.1": 0.8, "classifier.3": 0.25},
    "method": "l2",
    "granularity": "unstructured",
    "methods": {"classifier.1": "taylor"},
}
# name -> (plan file contents or None for a missing file, words the error line must contain)
BAD_PLANS: dict[str, tuple[str | None, list[str]]] = {
    "unknown-layer": ('{"sparsity": {"features.9": 0.5}}', ["features.9", "classifier.3"]),
    "sparsity-1.5": ('{"sparsity": {"features.0": 1.5}}', ["features.0", "1.5", "[0, 1]"]),
    "unknown-method": ('{"sparsity": {"features.0": 0.5}, "method": "obd"}', ["obd", "method"]),
    "invalid-json": ('{"sparsity": {"features.0": 0.5', ["not valid JSON"]),
    "missing-file": (None, ["cannot read", "missing.json"]),
    "nested-100k-deep": ("[" * 100_000 + "]" * 100_000, ["deep"]),
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every CLI call of this module, one per core at a time: each spends seconds importing."""
    folder = tmp_path_factory.mktemp("plans")
    good = folder / "plan.json"
    good.write_text(json.dumps(GOOD_PLAN))
    commands: dict[str, list[str]] = {
        "layers": ["layers", "--demo", "digits-cnn"],
        "evaluate": ["evaluate", "--demo", "digits-cnn", "--plan", str(good)],
    }
    for name, (text, _) in BAD_PLANS.items():
        path = folder / ("missing.json" if text is None else f"{name}.json")
        if text is not None:
            path.write_text(text)
        commands[name] = ["evaluate", "--demo", "digits-cnn", "--plan", str(path)]
    # One intra-op thread per process (as the library side below), so many can run at once.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(args: list[str]) -> Run:
        result = subprocess.run(
            [sys.executable, "-m", "workbench", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Run(result.returncode, result.stdout, result.stderr)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {name: pool.submit(run, args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    demo = wb.load_demo("digits-cnn")
    with one_thread():
        return wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)


def _same(a: object, b: object) -> bool:
    """Equal, where JSON's null stands for the report's missing values (NaN/None)."""

    def missing(x: object) -> bool:
        return x is None or (isinstance(x, float) and x != x)

    return a == b or (missing(a) and missing(b))


def test_layers_lists_the_prunable_layers(runs: dict[str, Run], bench: wb.Workbench) -> None:
    run = runs["layers"]
    assert run.returncode == 0, run.stderr
    header, *rows = run.stdout.strip().splitlines()
    assert header.split() == list(bench.layers.columns)
    cells = [row.split() for row in rows]
    assert [c[0] for c in cells] == bench.layer_names
    assert [c[1] for c in cells] == list(bench.layers["kind"])
    assert [int(c[3]) for c in cells] == list(bench.layers["params"])
    assert [int(c[-1]) for c in cells] == list(bench.layers["flops"])


def test_evaluate_equals_the_library(runs: dict[str, Run], bench: wb.Workbench) -> None:
    run = runs["evaluate"]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    out = json.loads(run.stdout)
    plan = wb.PruningPlan.from_dict(GOOD_PLAN)
    with one_thread():
        report = bench.evaluate(plan)
    assert wb.PruningPlan.from_dict(out["plan"]) == plan
    assert out["task"] == "classification"
    # JSON floats round-trip exactly, so the figures must be identical, not just close.
    assert out["metrics"] == report.metrics
    assert out["dense_metrics"] == report.dense_metrics == bench.dense_metrics
    assert out["size"] == report.size
    assert out["dense_size"] == report.dense_size
    layers = {row["name"]: row for row in out["layers"]}
    assert list(layers) == bench.layer_names
    for row in report.layers.to_dict(orient="records"):
        for key in ("nonzero", "sparsity", "method", "removed_units"):
            assert _same(layers[row["name"]][key], row[key]), (row["name"], key)
    assert out["metrics"] != out["dense_metrics"]  # the plan really pruned something


@pytest.mark.parametrize("name", list(BAD_PLANS))
def test_bad_plan_exits_with_one_clear_line(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    assert run.returncode == 2
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    for word in BAD_PLANS[name][1]:
        assert word in lines[0], (word, lines[0])


def test_evaluate_prints_strict_json(runs: dict[str, Run]) -> None:
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    json.loads(runs["evaluate"].stdout, parse_constant=refuse)


# ---- your own model: --model/--data on every command, and one line for every bad file ----------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small exported classifier and its data as CSV and npz, plus files that are wrong."""
    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model.eval()
    x = torch.randn(60, 4)
    with torch.no_grad():
        y = model(x).argmax(1).numpy()
    program = torch.export.export(model, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    files = {name: folder / name for name in ("tiny.pt2", "tiny.csv", "tiny.npz", "wide.npz")}
    torch.export.save(program, files["tiny.pt2"])
    frame = pd.DataFrame(x.numpy(), columns=["a", "b", "c", "d"]).assign(label=y)
    frame.to_csv(files["tiny.csv"], index=False)
    np.savez(files["tiny.npz"], inputs=x.numpy(), targets=y)
    np.savez(files["wide.npz"], inputs=np.zeros((60, 5), np.float32), targets=y)
    files["garbage.pt2"] = folder / "garbage.pt2"
    files["garbage.pt2"].write_bytes(b"not a model at all")
    files["folder"] = folder / "a-folder"
    files["folder"].mkdir()
    return files


def _run(argv: list[object], capsys: pytest.CaptureFixture[str]) -> Run:
    """main() in this process (a console script exits with what it returns)."""
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out = capsys.readouterr()
    return Run(code, out.out, out.err)


def test_sensitivity_takes_your_model_and_data(tiny, capsys, tmp_path) -> None:
    csv = tmp_path / "scan.csv"
    source = ["--model", tiny["tiny.pt2"], "--data", tiny["tiny.csv"], "--target", "label"]
    run = _run(["sensitivity", *source, "--levels", "0,0.5", "--csv", csv], capsys)
    assert run.returncode == 0, run.stderr
    assert "torch.export program" in run.stderr  # says what it read, once it all worked
    from workbench import io as wio

    model = wio.load_model(tiny["tiny.pt2"])
    data = wio.load_data(tiny["tiny.csv"], target="label")
    done = wio.run_build(model, data, name="tiny.pt2")
    expected = done.bench.sensitivity(levels=(0, 0.5))
    scan = pd.read_csv(csv, dtype={"layer": str})  # layer names "0", "2" are not numbers
    pd.testing.assert_frame_equal(scan, expected, check_exact=True)
    assert len(expected) == 2 * len(done.bench.layer_names)

    run = _run(["sensitivity", "--model", tiny["tiny.pt2"], "--data", tiny["tiny.npz"],
                "--levels", "0,0.5"], capsys)  # fmt: skip
    assert run.returncode == 0, run.stderr
    header, *rows = run.stdout.strip().splitlines()
    assert header.split()[:4] == ["layer", "level", "sparsity", "accuracy"]
    assert len(rows) == len(expected)


# name -> (arguments, words the one error line must contain)
BAD_INPUTS: dict[str, tuple[list[str], list[str]]] = {
    "model-not-a-model": (["layers", "--model", "garbage.pt2", "--data", "tiny.csv"],
                          ["garbage.pt2", "not a model file"]),
    "model-missing": (["evaluate", "--model", "missing.pt2", "--data", "tiny.csv"],
                      ["no such model file", "missing.pt2"]),
    "data-missing": (["sensitivity", "--model", "tiny.pt2", "--data", "missing.csv"],
                     ["no such data file", "missing.csv"]),
    "data-is-a-folder": (["layers", "--model", "tiny.pt2", "--data", "folder"], ["a-folder"]),
    "data-does-not-fit": (["layers", "--model", "tiny.pt2", "--data", "wide.npz"], ["shape"]),
    "sensitivity-not-a-model": (["sensitivity", "--model", "garbage.pt2", "--data", "tiny.csv"],
                                ["garbage.pt2"]),
    "model-without-data": (["sensitivity", "--model", "tiny.pt2"], ["--data"]),
    "bad-levels": (["sensitivity", "--levels", "0,x"], ["'x'"]),
    "usage": (["sensitivity", "--subset", "many"], ["--subset", "many", "--help"]),
    "unknown-command": (["prune"], ["prune", "--help"]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(tiny, capsys, name: str) -> None:
    argv, words = BAD_INPUTS[name]
    run = _run([str(tiny.get(arg, arg)) for arg in argv], capsys)
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_finetune_writes_the_recovered_weights(capsys, tmp_path) -> None:
    plan = wb.PruningPlan.uniform(["fc1", "fc2", "fc3"], 0.9, scope="global")
    (tmp_path / "plan.json").write_text(plan.to_json())
    out = tmp_path / "recovered.safetensors"
    argv = ["finetune", "--demo", "digits-mlp", "--plan", tmp_path / "plan.json",
            "--epochs", "1", "--lr", "3e-3", "--out", out]  # fmt: skip
    run = _run(argv, capsys)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val)
    oracle = wb.finetune(bench, plan, demo.train, epochs=1, lr=3e-3)
    assert summary["recovered_metrics"] == pytest.approx(oracle.report.metrics)
    assert summary["one_shot_metrics"] == pytest.approx(bench.evaluate(plan).metrics)
    from safetensors.torch import load_file

    model = wb.load_demo("digits-mlp").model
    model.load_state_dict(load_file(out))  # the original architecture's names
    for name, keep in bench.kept(plan).items():
        assert (model.get_parameter(name)[~keep] == 0).all()
    with torch.no_grad():
        accuracy = (model(demo.val.tensors[0]).argmax(1) == demo.val.tensors[1]).double().mean()
    assert float(accuracy) == pytest.approx(summary["recovered_metrics"]["accuracy"])


def test_finetune_your_model_needs_a_training_split(tiny, capsys, tmp_path) -> None:
    (tmp_path / "plan.json").write_text(wb.PruningPlan(sparsity={"0": 0.5}).to_json())
    source = ["--model", tiny["tiny.pt2"], "--data", tiny["tiny.csv"], "--target", "label"]
    run = _run(["finetune", *source, "--plan", tmp_path / "plan.json"], capsys)
    assert run.returncode == 2
    assert "no training data" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    run = _run(["finetune", *source, "--val-fraction", "0.5", "--plan", tmp_path / "plan.json",
                "--epochs", "2", "--batch-size", "8"], capsys)  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert "seeded split" in run.stderr  # the data's note says how it was split
    assert summary["recovered_metrics"]["accuracy"] >= 0


def test_a_yaml_plan_export_is_read_back(capsys, tmp_path) -> None:
    """The Prune page's plan-yaml download works as --plan, with the JSON's numbers."""
    bench = wb.Workbench(wb.load_demo("digits-cnn").model, wb.load_demo("digits-cnn").val)
    plan = wb.PruningPlan.from_dict(GOOD_PLAN)
    wb.export(bench, plan, tmp_path / "plan.yaml", format="plan-yaml")
    run = _run(["evaluate", "--demo", "digits-cnn", "--plan", tmp_path / "plan.yaml"], capsys)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["metrics"] == pytest.approx(bench.evaluate(plan).metrics)


def test_finetune_bad_settings_are_one_line_without_a_bar(capsys, tmp_path) -> None:
    (tmp_path / "plan.json").write_text(wb.PruningPlan(sparsity={"fc1": 0.5}).to_json())
    argv = [
        "finetune",
        "--demo",
        "digits-mlp",
        "--plan",
        tmp_path / "plan.json",
        "--distill",
        "1.5",
    ]
    run = _run(argv, capsys)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        "error: the distillation weight must be in [0, 1], got 1.5"
    ]
