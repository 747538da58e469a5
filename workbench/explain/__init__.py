"""Captum attributions on the dense and pruned models: input maps, layer and weight importance.

    maps = wb.explain.attribute(bench, [0, 5], "integrated_gradients", plan=plan)
    table = wb.explain.layer_importance(bench, "conductance")

Captum is imported only when something is computed, so `import workbench` stays fast.
"""

from workbench.explain._common import (
    ExplainError,
    Progress,
    SampleIndexError,
    clear_cache,
    run_to_end,
)
from workbench.explain.attributions import (
    ATTRIBUTION_METHODS,
    INPUT_KINDS,
    Attribution,
    AttributionMethod,
    MapView,
    Param,
    applicable_methods,
    attribute,
    compare,
    iter_attribute,
    map_similarity,
    map_view,
    resolve_input_kind,
)
from workbench.explain.importance import (
    CRITERION_SAMPLES,
    CRITERION_STEPS,
    LAYER_METHODS,
    LayerMethod,
    channel_kept,
    iter_layer_importance,
    iter_weight_importance,
    layer_importance,
    mark_plan,
    neuron_conductance,
    plan_cost,
    weight_importance,
)
from workbench.explain.overlap import (
    CURVE_SPARSITIES,
    Overlap,
    criterion_overlap,
    iter_overlap_curve,
    removed_units,
)
from workbench.explain.samples import broken_by_plan, sample_table, samples_of_class
from workbench.explain.text import EMBEDDING_NOTE, TEXT_NOTE, TokenInput, token_input

__all__ = [
    "ATTRIBUTION_METHODS",
    "CRITERION_SAMPLES",
    "CRITERION_STEPS",
    "CURVE_SPARSITIES",
    "EMBEDDING_NOTE",
    "INPUT_KINDS",
    "LAYER_METHODS",
    "TEXT_NOTE",
    "Attribution",
    "AttributionMethod",
    "ExplainError",
    "LayerMethod",
    "MapView",
    "Overlap",
    "Param",
    "Progress",
    "SampleIndexError",
    "TokenInput",
    "applicable_methods",
    "attribute",
    "broken_by_plan",
    "channel_kept",
    "clear_cache",
    "compare",
    "criterion_overlap",
    "resolve_input_kind",
    "iter_attribute",
    "iter_layer_importance",
    "iter_overlap_curve",
    "iter_weight_importance",
    "layer_importance",
    "map_similarity",
    "map_view",
    "mark_plan",
    "neuron_conductance",
    "plan_cost",
    "removed_units",
    "run_to_end",
    "token_input",
    "sample_table",
    "samples_of_class",
    "weight_importance",
]
