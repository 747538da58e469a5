"""Pruning criteria, by name. Adding one: a class in its own file (or an instance of one whose
variants differ by a constant), and one line here."""

from workbench.pruning.criteria._attribution import (
    CONDUCTANCE,
    GRADIENT_X_ACTIVATION,
    ChannelAttribution,
)
from workbench.pruning.criteria.base import Criterion, LayerContext, LayerStatistics
from workbench.pruning.criteria.magnitude import Magnitude
from workbench.pruning.criteria.random import Random
from workbench.pruning.criteria.taylor import Taylor
from workbench.pruning.criteria.wanda import Wanda

CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in (
        Magnitude(1),
        Magnitude(2),
        Random(),
        Taylor(),
        Wanda(),
        CONDUCTANCE,
        GRADIENT_X_ACTIVATION,
    )
}


def register_criterion(criterion: Criterion) -> Criterion:
    """Add a criterion (for instance from a notebook); it shows up in the app and the CLI."""
    CRITERIA[criterion.name] = criterion
    return criterion


__all__ = [
    "CRITERIA",
    "ChannelAttribution",
    "Criterion",
    "LayerContext",
    "LayerStatistics",
    "Magnitude",
    "register_criterion",
]
