"""The CLI's experiments: `evaluate --track` keeps the report as a run, `runs` lists them."""

from __future__ import annotations

import json

import pytest

import workbench as wb
from workbench.cli import main
from workbench.track import Store, default_uri


def test_evaluate_track_keeps_the_printed_report(data_dir, tmp_path, capsys) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(wb.PruningPlan(sparsity={"fc1": 0.7}).to_json())
    assert main(["evaluate", "--demo", "digits-mlp", "--plan", str(plan), "--track"]) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    assert "kept as run" in err and default_uri() in err
    runs = Store(default_uri()).runs("digits-mlp")
    assert list(runs["tags.source"]) == ["cli"]
    for name, value in printed["metrics"].items():
        assert runs.iloc[0][f"metrics.{name}"] == pytest.approx(value, rel=1e-12)
    assert runs.iloc[0]["metrics.sparse_bytes"] == printed["size"]["sparse_bytes"]

    assert main(["runs"]) == 0
    table = capsys.readouterr().out
    assert "digits-mlp" in table and runs.iloc[0]["run_id"][:8] in table
    assert main(["runs", "--demo", "digits-mlp", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in records] == list(runs["run_id"])
    assert records[0]["accuracy"] == printed["metrics"]["accuracy"]


def test_track_takes_another_store_and_runs_says_when_there_are_none(data_dir, capsys) -> None:
    other = f"sqlite:///{data_dir / 'other.db'}"
    assert main(["evaluate", "--demo", "digits-mlp", "--track", other]) == 0
    capsys.readouterr()
    assert len(Store(other).runs("digits-mlp")) == 1
    assert Store(default_uri()).runs("digits-mlp").empty
    assert main(["runs", "--demo", "digits-cnn", "--track", other]) == 0
    assert "no runs of digits-cnn" in capsys.readouterr().err


def test_an_unusable_store_is_one_error_line(data_dir, capsys) -> None:
    assert main(["runs", "--track", "nosuchscheme://x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_search_prints_its_front_and_keeps_every_trial(data_dir, capsys) -> None:
    argv = ["search", "--demo", "digits-cnn", "--trials", "6", "--lock", "classifier.3"]
    assert main([*argv, "--json", "--track"]) == 0
    out, err = capsys.readouterr()
    front = json.loads(out)
    runs = Store(default_uri()).runs("digits-cnn")
    assert len(runs) == 6 and set(runs["tags.source"]) == {"search"}
    costs = [row["sparse_bytes"] for row in front]
    assert costs == sorted(costs) and front
    demo = wb.load_demo("digits-cnn")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    for row in front:
        report = bench.evaluate(wb.PruningPlan.from_dict(row["plan"]))
        assert report.metrics["accuracy"] == row["accuracy"]
        assert row["plan"]["sparsity"]["classifier.3"] == 0.0
    assert main(["search", "--objective", "accuracy"]) == 2
    assert "a metric and a cost" in capsys.readouterr().err


def test_sensitivity_finetune_and_export_track_their_runs(data_dir, tmp_path, capsys) -> None:
    plan = wb.PruningPlan.uniform(["fc1", "fc2", "fc3"], 0.9, scope="global")
    (tmp_path / "plan.json").write_text(plan.to_json())
    source = ["--demo", "digits-mlp"]
    assert main(["sensitivity", *source, "--levels", "0,0.5", "--track"]) == 0
    assert main(["finetune", *source, "--plan", str(tmp_path / "plan.json"), "--epochs", "1",
                 "--track"]) == 0  # fmt: skip
    assert main(["export", *source, "--plan", str(tmp_path / "plan.json"), "--format", "plan",
                 "--out", str(tmp_path / "out.json"), "--track"]) == 0  # fmt: skip
    capsys.readouterr()
    store = Store(default_uri())
    runs = store.runs("digits-mlp")
    assert sorted(runs["tags.source"]) == ["export", "recovery", "sensitivity"]
    bench = wb.Workbench(wb.load_demo("digits-mlp").model, wb.load_demo("digits-mlp").val)
    exported = runs[runs["tags.source"] == "export"].iloc[0]
    assert exported["metrics.accuracy"] == pytest.approx(bench.evaluate(plan).metrics["accuracy"])
    oracle = wb.finetune(bench, plan, wb.load_demo("digits-mlp").train, epochs=1)
    kept = runs[runs["tags.source"] == "recovery"].iloc[0]
    assert kept["metrics.accuracy"] == pytest.approx(oracle.report.metrics["accuracy"])
    # the exported file is the run's artifact; the recovered run has its compacted figures
    assert store.artifact(exported["run_id"], "out.json") == (tmp_path / "out.json").read_bytes()
    assert kept["metrics.compacted_params"] == wb.compact(bench, plan).params


def test_export_track_keeps_the_model_file(data_dir, tmp_path, capsys) -> None:
    plan = wb.PruningPlan({"features.0": 0.5}, granularity="channel")
    (tmp_path / "plan.json").write_text(plan.to_json())
    out = tmp_path / "small.safetensors"
    assert main(["export", "--plan", str(tmp_path / "plan.json"), "--out", str(out), "--track"]) == 0
    capsys.readouterr()
    store = Store(default_uri())
    run = store.runs("digits-cnn").iloc[0]
    assert store.artifact(run["run_id"], "small.safetensors") == out.read_bytes()
    assert wb.PruningPlan.from_json(store.artifact(run["run_id"], "plan.json").decode()) == plan
    demo = wb.load_demo("digits-cnn")
    small = wb.compact(wb.Workbench(demo.model, demo.val), plan)
    assert run["metrics.compacted_bytes"] == small.dense_bytes


def test_search_with_the_flaml_backend_prints_the_librarys_front(data_dir, capsys) -> None:
    argv = ["search", "--demo", "digits-mlp", "--trials", "6", "--backend", "flaml", "--json"]
    assert main([*argv, "--track"]) == 0
    rows = json.loads(capsys.readouterr().out)
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    found = wb.track.search(bench, trials=6, backend="flaml")
    assert [row["plan"] for row in rows] == [r.plan.to_dict() for r in found.best]
    runs = Store(default_uri()).runs("digits-mlp")
    assert set(runs["tags.backend"]) == {"flaml"} and runs["tags.search"].nunique() == 1
    assert set(runs["tags.objective"]) == {"accuracy,sparse_bytes"}
