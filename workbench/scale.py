"""Scale-out on Ray: a sensitivity scan's layers as Ray tasks, a search's trials as Ray tasks,
each worker building its own workbench from a `Recipe` (a demo's name, or model and data files).

In-process stays the default everywhere; this module is used only when asked (`--ray` on the
CLI, the app's Ray setting) and imports `ray` only then (the optional `scale` extra):

    runner = RayRunner(Recipe(demo="digits-cnn"), address=None)  # None: a local Ray instance
    frame = wb.sensitivity(bench, levels=(0, 0.5, 0.9), runner=runner)
    result = wb.track.search(bench, trials=50, runner=runner)

A worker's numbers are the engine's own (`analysis.sensitivity.layer_values`,
`Workbench.evaluate`) on the same data in the same batches, so they equal the in-process ones.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workbench.errors import WorkbenchError
from workbench.evaluate import Report, Workbench
from workbench.pruning.plan import PruningPlan

__all__ = ["Recipe", "RayRunner", "ScaleError", "ray_available"]


class ScaleError(WorkbenchError):
    """Ray is not installed, cannot be reached, or the model cannot be rebuilt on a worker."""


def ray_available() -> bool:
    """Whether the optional `scale` extra (ray) is installed."""
    return importlib.util.find_spec("ray") is not None


@dataclass(frozen=True)
class Recipe:
    """How a worker builds the same workbench: a demo, or a model file and its data (the CLI's
    --model/--data options). Paths must be readable where the workers run."""

    demo: str | None = "digits-cnn"
    model: str | None = None
    data: str | None = None
    arch: str | None = None
    trust_pickle: bool = False
    target: str | None = None
    val_fraction: float | None = None

    def build(self) -> Workbench:
        """The workbench, built as the CLI builds it (the same batches, so the same numbers)."""
        if self.model is None and self.data is None:
            from workbench.models import load_demo

            demo = load_demo(self.demo or "digits-cnn")
            return Workbench(demo.model, demo.val, class_names=demo.meta.class_names)
        if self.model is None or self.data is None:
            raise ScaleError("a recipe with files needs both the model and its data")
        from workbench import io as wio

        model = wio.load_model(self.model, architecture=self.arch, trust_pickle=self.trust_pickle)
        data = wio.load_data(
            self.data,
            target=self.target,
            tokenizer=model.tokenizer,
            class_names=model.class_names or None,
            val_fraction=self.val_fraction,
        )
        return wio.run_build(model, data).bench


# One workbench per recipe per worker process: a worker that runs several tasks builds once.
_BUILT: dict[Recipe, Workbench] = {}
_BUILT_LOCK = threading.Lock()


def _bench_of(recipe: Recipe) -> Workbench:
    with _BUILT_LOCK:
        if recipe not in _BUILT:
            _BUILT.clear()  # a worker keeps the latest model only
            _BUILT[recipe] = recipe.build()
        return _BUILT[recipe]


def _scan_layer(recipe: Recipe, settings: Any, layer: str) -> tuple[str, dict]:
    """A Ray task: one layer's points of a scan, on the worker's own workbench."""
    from workbench.analysis.sensitivity import layer_values

    return layer, layer_values(_bench_of(recipe), settings, layer)


def _evaluate(recipe: Recipe, plan: PruningPlan) -> Report:
    """A Ray task: the exact report of one plan (a search trial)."""
    return _bench_of(recipe).evaluate(plan)


class RayRunner:
    """Runs a scan's layers or a search's trials as Ray tasks (one CPU each).

    `address`: a running Ray cluster ("auto", "ray://host:10001", ...); None starts a local
    instance on this machine (`num_cpus`: its size, default all). Ray is initialised once per
    process, on first use; an instance already initialised is used as it is. `parallel`: a
    search's trials in flight at once (default: the cluster's CPUs; 1 gives the in-process
    search's very trials).
    """

    def __init__(
        self,
        recipe: Recipe,
        address: str | None = None,
        *,
        num_cpus: int | None = None,
        parallel: int | None = None,
    ) -> None:
        if not ray_available():
            raise ScaleError(
                "Ray is not installed: pip install -r requirements-scale.txt (the scale extra)"
            )
        if parallel is not None and parallel < 1:
            raise ScaleError(f"parallel must be at least 1, got {parallel}")
        self.recipe, self.address, self.num_cpus = recipe, address, num_cpus
        self.parallel = parallel
        self._tasks: dict[str, Any] = {}

    def _ray(self) -> Any:
        import ray  # ~2 s to import and seconds to start: only when a Ray run is asked for

        if not ray.is_initialized():
            try:
                ray.init(
                    address=self.address,
                    num_cpus=None if self.address else self.num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = self.address or "a local instance"
                raise ScaleError(f"cannot start Ray on {where}: {error}") from error
        return ray

    def _task(self, function: Any) -> Any:
        name = function.__name__
        if name not in self._tasks:
            self._tasks[name] = self._ray().remote(num_cpus=1)(function)
        return self._tasks[name]

    @property
    def width(self) -> int:
        """A search's trials in flight at once: `parallel`, else the cluster's CPUs."""
        if self.parallel is not None:
            return self.parallel
        return max(1, int(self._ray().cluster_resources().get("CPU", 1)))

    def layer_values(self, settings: Any, layers: list[str]) -> Iterator[tuple[str, dict]]:
        """`analysis.sensitivity.LayerRunner`: a task per layer, yielded as each finishes."""
        task = self._task(_scan_layer)
        recipe = self._ray().put(self.recipe)
        pending = [task.remote(recipe, settings, layer) for layer in layers]
        yield from self._as_finished(pending)

    def submit(self, plan: PruningPlan) -> Any:
        """A search trial's evaluation as a task; `wait` hands its report back."""
        return self._task(_evaluate).remote(self.recipe, plan)

    def wait(self, handles: list[Any]) -> tuple[Any, Report]:
        """The first of `handles` to finish, and its report."""
        ray = self._ray()
        (ready,), _ = ray.wait(handles, num_returns=1)
        return ready, self._get(ready)

    def cancel(self, handles: list[Any]) -> None:
        ray = self._ray()
        for handle in handles:
            ray.cancel(handle)

    def _as_finished(self, pending: list[Any]) -> Iterator[Any]:
        ray = self._ray()
        try:
            while pending:
                (ready,), pending = ray.wait(pending, num_returns=1)
                yield self._get(ready)
        finally:  # a Stop (the generator closed): the rest are not needed
            for handle in pending:
                ray.cancel(handle)

    def _get(self, handle: Any) -> Any:
        ray = self._ray()
        try:
            return ray.get(handle)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else error
            if isinstance(cause, WorkbenchError):
                raise cause from None  # a bad input on the worker is the same one line here
            raise
