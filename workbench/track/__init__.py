"""Experiments: kept plans as MLflow runs (`Store`), the Pareto frontier of runs, and an
automated multi-objective search (Optuna) whose trials are exact evaluations."""

from workbench.track.compare import (
    COSTS,
    FRONTIER_COSTS,
    class_change,
    frontier_table,
    labels,
    layer_sparsity,
)
from workbench.track.frontier import TrackError, frontier
from workbench.track.measured import ship_metrics
from workbench.track.search import (
    BACKENDS,
    SearchResult,
    SearchStudy,
    TrialProgress,
    search,
    search_iter,
    search_study,
    search_tags,
)
from workbench.track.store import DATA_DIR_ENV, RunDetail, Store, data_dir, default_uri, fingerprint

__all__ = [
    "COSTS",
    "FRONTIER_COSTS",
    "class_change",
    "frontier_table",
    "labels",
    "layer_sparsity",
    "BACKENDS",
    "search",
    "search_iter",
    "search_study",
    "search_tags",
    "ship_metrics",
    "DATA_DIR_ENV",
    "RunDetail",
    "SearchResult",
    "SearchStudy",
    "Store",
    "TrackError",
    "TrialProgress",
    "data_dir",
    "default_uri",
    "fingerprint",
    "frontier",
]
