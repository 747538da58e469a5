"""The core package stands alone: no Streamlit, and an explicit public API that resolves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import workbench as wb

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: this test session may already have imported Streamlit elsewhere.
PROBE = """
import importlib, json, pkgutil, sys
import workbench
after_import = sorted(m for m in sys.modules if m.split(".")[0] == "streamlit")
modules = [
    m.name for m in pkgutil.walk_packages(workbench.__path__, "workbench.")
    if m.name != "workbench.__main__"  # runs the CLI
]
for name in modules:
    importlib.import_module(name)
after_all = sorted(m for m in sys.modules if m.split(".")[0] == "streamlit")
print(json.dumps({"after_import": after_import, "after_all": after_all, "modules": modules}))
"""


def test_core_never_imports_streamlit() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["after_import"] == [], "import workbench pulled in Streamlit"
    assert found["after_all"] == [], "a workbench submodule imports Streamlit"
    # The walk really imported the core, so the check above means something.
    assert {"workbench.cli", "workbench.evaluate.workbench", "workbench.pruning.plan"} <= set(
        found["modules"]
    )


def test_every_public_name_exists() -> None:
    assert len(wb.__all__) == len(set(wb.__all__))
    missing = [name for name in wb.__all__ if not hasattr(wb, name)]
    assert missing == []
    assert all(not name.startswith("_") for name in wb.__all__)
    # The documented entry points are among them.
    for name in ("Workbench", "PruningPlan", "PlanError", "load_demo", "CRITERIA", "GRANULARITIES"):
        assert name in wb.__all__
    assert issubclass(wb.PlanError, ValueError)


def test_every_error_the_core_raises_on_purpose_has_one_root() -> None:
    import inspect

    import workbench as wb
    import workbench.analysis
    import workbench.explain
    import workbench.io

    errors = {
        obj
        for module in (wb, workbench.analysis, workbench.explain, workbench.io)
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__.startswith("workbench")
    }
    assert len(errors) >= 8
    assert all(issubclass(e, wb.WorkbenchError) for e in errors), sorted(e.__name__ for e in errors)
