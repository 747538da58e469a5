"""Analyses built on the engine: per-layer sensitivity scans and per-layer budget proposals."""

from workbench.analysis.budget import (
    PROPOSALS,
    TARGET_KINDS,
    Budget,
    BudgetError,
    Proposal,
    drop_table,
    footprint,
    solve_budget,
    tolerated_sparsity,
)
from workbench.analysis.sensitivity import (
    DEFAULT_LEVELS,
    ScanError,
    ScanProgress,
    ScanSettings,
    cached_scan,
    clear_cache,
    parse_levels,
    primary_metric,
    scan,
    scan_iter,
    subset_indices,
)

__all__ = [
    "DEFAULT_LEVELS",
    "PROPOSALS",
    "TARGET_KINDS",
    "Budget",
    "BudgetError",
    "Proposal",
    "ScanError",
    "ScanProgress",
    "ScanSettings",
    "cached_scan",
    "clear_cache",
    "drop_table",
    "footprint",
    "parse_levels",
    "primary_metric",
    "scan",
    "scan_iter",
    "solve_budget",
    "subset_indices",
    "tolerated_sparsity",
]
