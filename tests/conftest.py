"""Every test's run store (workbench.track) is a temporary folder, never the project's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from workbench.track import DATA_DIR_ENV, Store


@pytest.fixture(scope="session", autouse=True)
def _private_run_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ[DATA_DIR_ENV] = str(tmp_path_factory.mktemp("workbench-data"))


@pytest.fixture(scope="session")
def _migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow database with its tables made (that takes seconds); tests copy it."""
    folder = tmp_path_factory.mktemp("store-template")
    Store(f"sqlite:///{folder / 'mlflow.db'}")
    return folder / "mlflow.db"


@pytest.fixture
def data_dir(_migrated_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store of this test's own, in WORKBENCH_DATA_DIR (where the app opens it)."""
    shutil.copy(_migrated_store, tmp_path / "mlflow.db")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    return tmp_path
