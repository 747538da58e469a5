"""`pip install .` gives a working workbench: the wheel ships the demo zoo and the console script.

The wheel is built from a copy of the tree (no build/ or *.egg-info in the shared checkout) with
the setuptools already installed, and installed with `pip --target` without dependencies: the
installed package then runs on this venv's torch, from another folder, with the checkout off
sys.path. Nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "workbench" / "models" / "zoo"

# Run with -I (no PYTHONPATH, no cwd on sys.path): only the installed copy can be imported.
PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import workbench as wb
assert wb.__file__.startswith(sys.argv[1]), wb.__file__
for name in ("digits-cnn", "mnist1d-cnn"):  # safetensors + JSON each; mnist1d also its data file
    demo = wb.load_demo(name)
    bench = wb.Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
    report = bench.evaluate(wb.PruningPlan(sparsity={bench.layer_names[0]: 0.5}))
    print(name, report.metrics["accuracy"], wb.__file__)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel built from this tree, and the folder it was installed into."""
    folder = tmp_path_factory.mktemp("packaging")
    source = folder / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(
        ROOT / "workbench", source / "workbench", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = folder / "dist"
    # The PEP 517 backend called directly: what `pip wheel --no-build-isolation` would run.
    build = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", build, str(dist)],
        cwd=source, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    wheel = dist / result.stdout.strip().splitlines()[-1]
    site = folder / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
         "--disable-pip-version-check", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    elsewhere = folder / "elsewhere"  # a cwd with no workbench/ in it
    elsewhere.mkdir()
    return {"wheel": wheel, "site": site, "cwd": elsewhere}


@pytest.mark.slow
def test_the_wheel_ships_the_zoo_and_the_console_script(installed) -> None:
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    zoo = sorted(p.name for p in ZOO.iterdir() if p.is_file())
    assert zoo, "the checkout has no zoo"
    missing = [name for name in zoo if f"workbench/models/zoo/{name}" not in names]
    assert not missing, f"the wheel lacks {missing}"
    assert "prune-workbench = workbench.cli:main" in scripts
    assert b"Requires-Dist: torch==2.13.0" in metadata


@pytest.mark.slow
def test_the_installed_wheel_loads_demos_outside_the_checkout(installed) -> None:
    site = str(installed["site"])
    result = subprocess.run(
        [sys.executable, "-I", "-c", PROBE, site],
        cwd=installed["cwd"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["digits-cnn", "mnist1d-cnn"]
    assert all(line.split()[2].startswith(site) for line in lines)


@pytest.mark.slow
def test_the_console_script_runs_from_the_installed_wheel(installed) -> None:
    script = installed["site"] / "bin" / "prune-workbench"
    assert script.is_file(), sorted(p.name for p in installed["site"].iterdir())
    env = {**os.environ, "PYTHONPATH": str(installed["site"]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(script), "layers", "--demo", "tabular-mlp", "--json"],
        cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"name"' in result.stdout
    result = subprocess.run(
        [str(script), "evaluate", "--plan", "missing.json"],
        cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: cannot read plan file 'missing.json': No such file or directory"
    ]
