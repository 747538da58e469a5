"""Pruning granularities, by name. Adding one: a class in its own file, and one line here."""

from workbench.pruning.granularity.base import Granularity
from workbench.pruning.granularity.channel import Channel
from workbench.pruning.granularity.group import Group
from workbench.pruning.granularity.n_m import NM
from workbench.pruning.granularity.unstructured import Unstructured

GRANULARITIES: dict[str, Granularity] = {
    g.name: g for g in (Unstructured(), Channel(), Group(), NM(2, 4), NM(4, 8))
}

__all__ = ["GRANULARITIES", "Granularity"]
