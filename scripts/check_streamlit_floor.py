"""Check that the Streamlit floor in requirements.txt has every API app.py, pages/ and ui/ call.

    python scripts/check_streamlit_floor.py            # the floor from requirements.txt
    python scripts/check_streamlit_floor.py 1.55.0     # any other version

Installs that Streamlit (without its dependencies, plus the few small ones the environment may
lack) into a temporary folder, imports it there and checks every `st.x(...)` and widget-method
call: the name exists and each keyword is a parameter. Exit 1 lists what is missing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Pure-Python dependencies of older Streamlit releases that newer ones dropped.
EXTRA = ["blinker", "cachetools", "toml", "tenacity", "tornado", "gitpython", "gitdb", "smmap"]

PROBE = r"""
import ast, inspect, sys
from pathlib import Path
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

root = Path(sys.argv[1])
files = [root / "app.py", *sorted((root / "pages").glob("*.py"))]
files += sorted((root / "ui").glob("*.py"))
problems = []


def dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


for path in files:
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        parts = dotted(node.func)
        where = f"{path.relative_to(root)}:{node.lineno} {'.'.join(parts)}"
        if parts[:1] == ["st"]:
            target = st
            try:
                for part in parts[1:]:
                    target = getattr(target, part)
            except AttributeError:
                problems.append(f"{where}: no such API")
                continue
        elif hasattr(DeltaGenerator, node.func.attr):  # a column, tab, container or sidebar
            target = getattr(DeltaGenerator, node.func.attr)
        else:
            continue
        try:
            params = inspect.signature(target).parameters
        except (TypeError, ValueError):
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        missing = [kw.arg for kw in node.keywords if kw.arg and kw.arg not in params]
        problems += [f"{where}: no keyword {name}=" for name in missing]
print(f"streamlit {st.__version__}: {len(problems)} problem(s)")
print("\n".join(problems))
sys.exit(1 if problems else 0)
"""


def floor() -> str:
    """The version after `streamlit>=` in requirements.txt."""
    match = re.search(r"^streamlit>=([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M)
    if match is None:
        raise SystemExit("requirements.txt has no streamlit>= line")
    return match.group(1)


def main() -> int:
    version = sys.argv[1] if len(sys.argv) > 1 else floor()
    with tempfile.TemporaryDirectory() as folder:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
        subprocess.run([*pip, folder, f"streamlit=={version}"], check=True)
        subprocess.run([*pip, str(Path(folder) / "extra"), *EXTRA], check=True)
        env = {**os.environ, "PYTHONPATH": f"{folder}:{Path(folder) / 'extra'}"}
        return subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main())
