"""Kept plans as MLflow runs in a local backend that survives restarts.

Each model has an MLflow experiment; a run holds a plan (params, and the plan JSON as an
artifact), its report (metrics: every metric, size and FLOPs figure; report.json: the layer
table and per-class accuracy) and tags: the model, the data fingerprint, where it came from.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from workbench.evaluate import Report, Workbench
from workbench.pruning.plan import PruningPlan
from workbench.track.frontier import TrackError

#: The operator's folder for kept runs (`mlflow.db` and `artifacts/` inside it).
DATA_DIR_ENV = "WORKBENCH_DATA_DIR"
_CHECKOUT = Path(__file__).resolve().parents[2]
# MLflow draws a tqdm bar for every artifact it reads back: noise in the app's log and the CLI.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# mlflow.search_runs reads the process-wide tracking URI: set it only while holding this.
_GLOBAL_URI = threading.Lock()
_KEY = re.compile(r"[^\w./\- :]")  # what MLflow allows in a param or metric name
_PLAN, _REPORT = "plan.json", "report.json"
F = TypeVar("F", bound=Callable[..., Any])


def _mlflow_errors(what: str) -> Callable[[F], F]:
    """A store method whose MLflow errors (a bad URI, a store it cannot open) are one
    TrackError line."""

    def wrap(method: F) -> F:
        @functools.wraps(method)
        def run(self: Store, *args: Any, **options: Any) -> Any:
            try:
                return method(self, *args, **options)
            except _store_errors() as error:
                raise TrackError(f"{what} in {self.uri}: {_message(error)}") from error

        return run  # type: ignore[return-value]

    return wrap


def _opened(client: Callable[..., Any], uri: str) -> Any:
    try:
        return client(tracking_uri=uri)
    except _store_errors() as error:
        raise TrackError(f"cannot open the run store {uri}: {_message(error)}") from error


def _store_errors() -> tuple[type[BaseException], ...]:
    """What a store that cannot be used raises: MLflow's errors, and its database's (a file
    there that is no sqlite database, a locked or read-only one)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    return MlflowException, SQLAlchemyError


def _message(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    return text.splitlines()[0] if text else type(error).__name__


def data_dir() -> Path:
    """`$WORKBENCH_DATA_DIR`, else `.workbench-data/` in the checkout (or the working dir)."""
    if chosen := os.environ.get(DATA_DIR_ENV):
        return Path(chosen).expanduser()
    root = _CHECKOUT if (_CHECKOUT / "pyproject.toml").exists() else Path.cwd()
    return root / ".workbench-data"


def default_uri() -> str:
    return f"sqlite:///{data_dir() / 'mlflow.db'}"


_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fingerprint(bench: Workbench) -> str:
    """A short hash of the validation inputs and targets: runs on other data are not compared."""
    if bench not in _FINGERPRINTS:
        digest = hashlib.sha256()
        for tensor in (bench.val_inputs, bench.targets):
            if tensor is not None:
                array = tensor.detach().cpu().contiguous().numpy()
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(array.tobytes())
        _FINGERPRINTS[bench] = digest.hexdigest()[:16]
    return _FINGERPRINTS[bench]


@dataclass(frozen=True)
class RunDetail:
    """What a compare view needs of one run."""

    run_id: str
    name: str
    plan: PruningPlan
    task: str
    metrics: dict[str, float]
    dense_metrics: dict[str, float]
    size: dict[str, float]
    layers: pd.DataFrame  # the report's layer table (sparsity as cut)
    per_class: pd.DataFrame | None  # class, support, dense_accuracy, accuracy


class Store:
    """Runs in an MLflow tracking backend (by default sqlite under `data_dir()`)."""

    def __init__(self, uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient  # ~2 s to import: only when a store is used

        self.uri = uri or default_uri()
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._client = _opened(MlflowClient, self.uri)
        self._details: dict[str, RunDetail] = {}
        self.generation = 0  # runs this object kept: a cache of listings can key on it

    def _experiment(self, model: str, create: bool) -> str | None:
        name = f"workbench/{model}"
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        if not create:
            return None
        location = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the database, not in the cwd
            folder = Path(self.uri.removeprefix("sqlite:///")).parent / "artifacts"
            location = (folder / _KEY.sub("_", model)).resolve().as_uri()
        try:
            return self._client.create_experiment(name, artifact_location=location)
        except Exception:  # noqa: BLE001 - another session created it first: use theirs
            found = self._client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    @_mlflow_errors("cannot keep the run")
    def keep(
        self,
        report: Report,
        *,
        model: str,
        data: str = "",
        source: str = "keep",
        name: str | None = None,
        session: str | None = None,
        tags: dict[str, str] | None = None,
        texts: dict[str, str] | None = None,
        metrics: Mapping[str, float] | None = None,
        files: Mapping[str, bytes | Path] | None = None,
    ) -> str:
        """Record `report` (and its plan) as a finished run; returns the run id.

        `session`: the browser session an upload belongs to; such runs are listed to it only.
        `texts`: more artifacts, {file name: text}. `metrics`: more metrics (`ship_metrics`:
        compacted figures, latency). `files`: artifacts such as an exported model, {file name:
        its bytes or a path to it}.
        """
        from mlflow.entities import Metric, Param, RunTag

        plan = report.plan
        experiment = self._experiment(model, create=True)
        all_tags = {
            "model": model,
            "data": data,
            "source": source,
            "task": report.task,
            "mlflow.runName": name or _default_name(plan),
            **({"session": session} if session else {}),
            **(tags or {}),
        }
        run = self._client.create_run(experiment, tags=all_tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        values = {
            **report.metrics,
            **{f"dense_{k}": v for k, v in report.dense_metrics.items()},
            **dict(report.size),
            **dict(metrics or {}),
        }
        metrics = [Metric(_KEY.sub("_", k), float(v), now, 0) for k, v in values.items()]
        params = {"method": plan.method, "granularity": plan.granularity, "scope": plan.scope}
        params |= {f"sparsity.{layer}": f"{v:g}" for layer, v in plan.sparsity.items()}
        params |= {f"method.{layer}": m for layer, m in plan.methods.items()}
        self._client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(_KEY.sub("_", k), str(v)) for k, v in params.items()],
            tags=[RunTag("mlflow.source.name", "prune-workbench")],
        )
        per_class = report.per_class
        detail = {
            **report.to_dict(),
            "class_names": list(report.class_names),
            "per_class": None if per_class is None else per_class.to_dict(orient="list"),
        }
        self._client.log_text(run_id, plan.to_json(), _PLAN)
        self._client.log_text(run_id, json.dumps(detail, default=_jsonable), _REPORT)
        for file, text in (texts or {}).items():
            self._client.log_text(run_id, text, file)
        if files:
            with tempfile.TemporaryDirectory() as folder:
                for file, content in files.items():
                    path = Path(folder) / Path(file).name
                    if isinstance(content, bytes):
                        path.write_bytes(content)
                    else:
                        shutil.copyfile(content, path)
                    self._client.log_artifact(run_id, str(path))
        self._client.set_terminated(run_id)
        self.generation += 1
        return run_id

    @_mlflow_errors("cannot read the runs")
    def runs(
        self, model: str | None = None, *, data: str | None = None, session: str | None = None
    ) -> pd.DataFrame:
        """The runs, newest first, as `mlflow.search_runs` gives them (`metrics.*`, `params.*`,
        `tags.*` columns). With `model`: that model's only; `data`: on that data only; runs kept
        for a session other than `session` are never listed."""
        import mlflow

        if model is not None:
            experiment = self._experiment(model, create=False)
            if experiment is None:
                return _empty()
            where: dict[str, Any] = {"experiment_ids": [experiment]}
        else:
            where = {"search_all_experiments": True}
        with _GLOBAL_URI:
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(self.uri)
            try:
                frame = mlflow.search_runs(order_by=["attributes.start_time DESC"], **where)
            finally:
                mlflow.set_tracking_uri(previous)
        if frame.empty:
            return _empty()
        for column in ("tags.session", "tags.data", "tags.model", "tags.source"):
            if column not in frame:
                frame[column] = None
        frame = frame[frame["tags.model"].notna()]  # MLflow's own Default experiment
        mine = frame["tags.session"].isna() | (frame["tags.session"] == session)
        frame = frame[mine if session else frame["tags.session"].isna()]
        if data is not None:
            frame = frame[frame["tags.data"] == data]
        return frame.reset_index(drop=True)

    def artifact(self, run_id: str, name: str) -> bytes:
        """The bytes of one of a run's artifacts (plan.json, an exported model...)."""
        import mlflow

        try:
            run = self._client.get_run(run_id)
            with tempfile.TemporaryDirectory() as folder:
                path = mlflow.artifacts.download_artifacts(
                    f"{run.info.artifact_uri}/{name}", dst_path=folder
                )
                return Path(path).read_bytes()
        except (*_store_errors(), OSError) as error:
            message = f"run {run_id!r} has no artifact {name!r}: {_message(error)}"
            raise TrackError(message) from error

    def plan(self, run_id: str) -> PruningPlan:
        """The plan a run kept, exactly (from its plan JSON)."""
        return self.detail(run_id).plan

    def detail(self, run_id: str) -> RunDetail:
        if run_id not in self._details:
            try:
                run = self._client.get_run(run_id)
                import mlflow

                saved = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{_REPORT}"))
            except Exception as error:  # noqa: BLE001 - a deleted run, a foreign store
                raise TrackError(f"run {run_id!r} cannot be read back: {error}") from error
            per_class = saved.get("per_class")
            self._details[run_id] = RunDetail(
                run_id=run_id,
                name=run.data.tags.get("mlflow.runName", run_id[:8]),
                plan=PruningPlan.from_dict(saved["plan"]),
                task=saved["task"],
                metrics={k: _number(v) for k, v in saved["metrics"].items()},
                dense_metrics={k: _number(v) for k, v in saved["dense_metrics"].items()},
                size=dict(saved["size"]),
                layers=pd.DataFrame(saved["layers"]),
                per_class=None if per_class is None else pd.DataFrame(per_class),
            )
        return self._details[run_id]


def _default_name(plan: PruningPlan) -> str:
    """A short name for a run: its pruned layers (or how many), and any non-default option."""
    pruned = {n: v for n, v in plan.sparsity.items() if v > 0}
    if not pruned:
        name = "dense"
    elif len(pruned) <= 3:
        name = ", ".join(f"{layer} {value:.0%}" for layer, value in pruned.items())
    else:
        name = f"{len(pruned)} layers ~{sum(pruned.values()) / len(pruned):.0%}"
    options = [o for o, default in ((plan.method, "l1"), (plan.granularity, "unstructured"))
               if o != default] + (["global"] if plan.scope == "global" else [])  # fmt: skip
    return " · ".join([name, *options])


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["run_id", "start_time", "tags.model", "tags.data", "tags.source", "tags.session"]
    )
