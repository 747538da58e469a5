"""python -m workbench export / latency."""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.cli import main

PLAN = wb.PruningPlan(sparsity={"features.0": 0.5, "features.2": 0.5}, granularity="channel")


def _run(argv: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def plan_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(PLAN.to_json())
    return path


def test_export_pt2_reads_back(plan_file, tmp_path, capsys) -> None:
    out = tmp_path / "x.pt2"
    code, stdout, _ = _run(
        ["export", "--demo", "digits-cnn", "--plan", plan_file, "--format", "pt2", "--out", out],
        capsys,
    )
    assert code == 0 and stdout.startswith("wrote ") and "bytes" in stdout
    demo = wb.load_demo("digits-cnn")
    back = wb.Workbench(wb.load_model(out).model, demo.val)
    bench = wb.Workbench(demo.model, demo.val)
    assert back.dense_metrics["accuracy"] == bench.evaluate(PLAN).metrics["accuracy"]


def test_export_format_from_the_suffix(plan_file, tmp_path, capsys) -> None:
    out = tmp_path / "card.md"
    assert _run(["export", "--plan", plan_file, "--out", out], capsys)[0] == 0
    assert out.read_text().startswith("# Model card")


def test_export_int8_from_the_suffix_reads_back(plan_file, tmp_path, capsys) -> None:
    pytest.importorskip("torchao")
    out = tmp_path / "x.int8.safetensors"
    assert (
        _run(["export", "--demo", "digits-cnn", "--plan", plan_file, "--out", out], capsys)[0] == 0
    )
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val)
    back = wb.read_int8(out, bench)
    assert bench.model_metrics(back.model) == bench.model_metrics(wb.quantize(bench, PLAN).model)


def test_export_bad_input_is_one_line_exit_2(plan_file, tmp_path, capsys) -> None:
    for argv in (
        ["export", "--plan", plan_file, "--out", tmp_path / "x.bin"],
        ["export", "--plan", plan_file, "--out", tmp_path / "no" / "x.pt2"],
        ["export", "--plan", tmp_path / "missing.json", "--out", tmp_path / "x.pt2"],
        ["export", "--plan", plan_file, "--format", "zip", "--out", tmp_path / "x.pt2"],
    ):
        code, _, stderr = _run(argv, capsys)
        assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr


def test_latency_table(plan_file, capsys) -> None:
    code, stdout, _ = _run(["latency", "--plan", plan_file, "--threads", "1", "--json"], capsys)
    assert code == 0
    rows = json.loads(stdout)
    assert [r["label"] for r in rows][:3] == ["dense", "masked", "compacted"]
    assert all(r["batch"] == 1 and r["threads"] == 1 and r["median_ms"] > 0 for r in rows)
    code, stdout, _ = _run(["latency", "--plan", plan_file, "--batch-size", "4"], capsys)
    assert code == 0 and "compacted" in stdout and "speedup" in stdout
    code, _, stderr = _run(["latency", "--batch-size", "0"], capsys)
    assert code == 2 and "batch size" in stderr
