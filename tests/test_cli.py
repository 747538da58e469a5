"""`python -m workbench`: the same numbers as the library, and one clear line for a bad plan."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import workbench as wb

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
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    with _one_thread():
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
    with _one_thread():
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
    assert run.returncode != 0
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
