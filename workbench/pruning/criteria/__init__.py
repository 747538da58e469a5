"""Pruning criteria, by name. Adding one: a class in its own file, and one line here."""

from workbench.pruning.criteria.base import Criterion, LayerContext, LayerStatistics
from workbench.pruning.criteria.conductance import Conductance
from workbench.pruning.criteria.gradient_activation import GradientActivation
from workbench.pruning.criteria.l1 import L1
from workbench.pruning.criteria.l2 import L2
from workbench.pruning.criteria.random import Random
from workbench.pruning.criteria.taylor import Taylor
from workbench.pruning.criteria.wanda import Wanda

CRITERIA: dict[str, Criterion] = {
    c.name: c() for c in (L1, L2, Random, Taylor, Wanda, Conductance, GradientActivation)
}


def register_criterion(criterion: Criterion) -> Criterion:
    """Add a criterion (for instance from a notebook); it shows up in the app and the CLI."""
    CRITERIA[criterion.name] = criterion
    return criterion


__all__ = ["CRITERIA", "Criterion", "LayerContext", "LayerStatistics", "register_criterion"]
