"""Experiments: kept plans as MLflow runs (`Store`), and the Pareto frontier of runs."""

from workbench.track.compare import (
    COSTS,
    class_change,
    frontier_table,
    labels,
    layer_sparsity,
)
from workbench.track.frontier import TrackError, frontier
from workbench.track.store import DATA_DIR_ENV, RunDetail, Store, data_dir, default_uri, fingerprint

__all__ = [
    "COSTS",
    "class_change",
    "frontier_table",
    "labels",
    "layer_sparsity",
    "DATA_DIR_ENV",
    "RunDetail",
    "Store",
    "TrackError",
    "data_dir",
    "default_uri",
    "fingerprint",
    "frontier",
]
