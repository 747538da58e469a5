"""Scale-out on Ray (the scale extra): on a local Ray instance with 2 CPUs, a scan's layers and a
search's trials run as Ray tasks on workers that build their own workbench, and give the
in-process numbers exactly. Skipped only when ray is not installed; Ray starts once, here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import workbench as wb
from workbench.analysis import clear_cache, iter_scan
from workbench.cli import main as cli_main
from workbench.progress import drain
from workbench.scale import RayRunner, Recipe, ScaleError
from workbench.track import search

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # The workers import workbench from the checkout, as this process does.
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def bench() -> wb.Workbench:
    return Recipe(demo="digits-cnn").build()


def test_a_ray_scan_is_the_in_process_scan(bench) -> None:
    options = {"levels": (0.0, 0.3, 0.7, 0.95), "bootstrap": 16, "seed": 3}
    clear_cache(bench)
    here = drain(iter_scan(bench, **options))
    clear_cache(bench)  # else the Ray scan would be read from the cache
    events = list(iter_scan(bench, runner=RayRunner(Recipe(demo="digits-cnn")), **options))
    on_ray = events[-1].result
    # The engine's evaluation is deterministic for the same batches: bit for bit, not close.
    pd.testing.assert_frame_equal(on_ray, here, check_exact=True)
    assert on_ray.attrs == here.attrs
    assert [e.done for e in events[:-1]] == list(range(1, len(here) + 1))


def test_a_ray_subset_scan_with_a_data_criterion_is_the_in_process_one() -> None:
    demo = wb.load_demo("tabular-mlp")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    options = {"levels": (0.0, 0.5, 0.9), "method": "taylor", "subset": 60, "seed": 1}
    here = drain(iter_scan(bench, **options))
    clear_cache(bench)
    on_ray = drain(iter_scan(bench, runner=RayRunner(Recipe(demo="tabular-mlp")), **options))
    pd.testing.assert_frame_equal(on_ray, here, check_exact=True)


def test_a_ray_search_of_one_in_flight_is_the_in_process_search(bench) -> None:
    options = {"trials": 8, "seed": 2, "locked": ["classifier.3"]}
    here = search(bench, **options)
    runner = RayRunner(Recipe(demo="digits-cnn"), parallel=1)
    on_ray = search(bench, runner=runner, **options)
    assert [r.plan for r in on_ray.reports] == [r.plan for r in here.reports]
    assert [r.metrics for r in on_ray.reports] == [r.metrics for r in here.reports]
    assert on_ray.front == here.front


def test_a_parallel_ray_search_keeps_exact_trials_and_a_true_front(bench) -> None:
    runner = RayRunner(Recipe(demo="digits-cnn"))
    assert runner.width == 2  # the local instance's CPUs
    result = search(bench, trials=10, seed=0, runner=runner)
    assert len(result.reports) == 10 and not result.stopped
    for report in result.reports:
        fresh = bench.evaluate(report.plan)
        assert report.metrics == fresh.metrics
        assert dict(report.size) == dict(fresh.size)
    values = [r.metrics["accuracy"] for r in result.reports]
    costs = [r.size["sparse_bytes"] for r in result.reports]
    assert list(wb.track.frontier(values, costs)) == result.front


def test_the_cli_ray_scan_prints_the_in_process_table(tmp_path, capsys) -> None:
    here, there = tmp_path / "here.csv", tmp_path / "ray.csv"
    args = ["sensitivity", "--demo", "digits-mlp", "--levels", "0,0.5,0.9"]
    assert cli_main([*args, "--csv", str(here)]) == 0
    assert cli_main([*args, "--csv", str(there), "--ray"]) == 0  # the instance started above
    assert there.read_text() == here.read_text()
    capsys.readouterr()
    assert cli_main(["search", "--demo", "digits-mlp", "--trials", "4", "--ray", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    bench = Recipe(demo="digits-mlp").build()
    for row in rows:
        plan = wb.PruningPlan.from_dict(row["plan"])
        assert row["accuracy"] == bench.evaluate(plan).metrics["accuracy"]


def test_a_workers_bad_input_is_the_same_one_error_line(tmp_path, bench, capsys) -> None:
    recipe = Recipe(model=str(tmp_path / "gone.pt2"), data=str(tmp_path / "gone.npz"))
    with pytest.raises(wb.WorkbenchError):
        drain(iter_scan(bench, levels=(0.5,), runner=RayRunner(recipe)))
    with pytest.raises(ScaleError, match="parallel"):
        RayRunner(recipe, parallel=0)


def test_nothing_else_imports_ray() -> None:
    probe = (
        "import sys, workbench as wb, workbench.cli, workbench.scale\n"
        "from workbench.analysis import scan\n"
        "d = wb.load_demo('digits-mlp')\n"
        "b = wb.Workbench(d.model, d.val)\n"
        "scan(b, levels=(0.5,)); wb.track.search(b, trials=2)\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_the_apps_ray_setting_runs_a_scan_and_a_search_on_ray(data_dir, monkeypatch) -> None:
    """Sensitivity and History: with "Run on Ray" on, the scan's layers and the search's trials
    go to Ray tasks (counted), and the page shows and keeps the in-process numbers."""
    from tests.test_app import open_page
    from tests.test_sensitivity_page import open_sensitivity
    from workbench.analysis import scan
    from workbench.track import Store, default_uri

    used: list[str] = []
    layer_values, submit = RayRunner.layer_values, RayRunner.submit
    monkeypatch.setattr(
        RayRunner, "layer_values",
        lambda self, *a: (used.append("scan"), (yield from layer_values(self, *a)))[1],
    )  # fmt: skip
    monkeypatch.setattr(
        RayRunner, "submit", lambda self, plan: (used.append("trial"), submit(self, plan))[1]
    )
    at = open_sensitivity("digits-mlp")
    at.text_input(key="sensitivity-levels:digits-mlp:").set_value("0, 40, 80").run()
    at.toggle(key="ray-scan:digits-mlp:").set_value(True).run()
    [b for b in at.button if b.label == "Run scan"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert used == ["scan"]
    demo = wb.load_demo("digits-mlp")
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    table = next(d.value for d in at.dataframe if "level" in d.value.columns)
    assert list(table["accuracy"]) == list(scan(bench, (0.0, 0.4, 0.8))["accuracy"])

    at = open_page("pages/history.py")
    at.number_input(key="search-trials:digits-cnn:").set_value(4).run()
    at.toggle(key="ray-search:digits-cnn:").set_value(True).run()
    at.button(key="search-start:digits-cnn:").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert used.count("trial") == 4
    store = Store(default_uri())
    runs = store.runs("digits-cnn")
    assert len(runs) == 4
    cnn = Recipe(demo="digits-cnn").build()
    for run_id, accuracy in zip(runs["run_id"], runs["metrics.accuracy"], strict=True):
        assert cnn.evaluate(store.plan(run_id)).metrics["accuracy"] == accuracy
