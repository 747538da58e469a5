"""Prune Workbench: look inside a neural network and prune it by hand, with exact numbers.

import workbench as wb
demo = wb.load_demo("digits-cnn")
bench = wb.Workbench(demo.model, demo.val)
report = bench.evaluate(wb.PruningPlan(sparsity={"features.0": 0.5}))
"""

from workbench import (
    plots,  # figure builders: the layer above all the others
    track,  # experiments: kept runs (MLflow), the frontier, the search
)
from workbench.analysis import (
    DEFAULT_LEVELS,
    TARGET_KINDS,
    Budget,
    BudgetError,
    Proposal,
    ScanError,
    ScanProgress,
    iter_scan,
    scan_iter,
    solve_budget,
)
from workbench.analysis.sensitivity import scan as sensitivity
from workbench.errors import WorkbenchError
from workbench.evaluate import Report, Workbench
from workbench.evaluate.estimate import Estimate, EvaluationProgress, estimator, evaluate_iter
from workbench.evaluate.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC
from workbench.evaluate.workbench import EvaluationCancelled
from workbench.explain import ATTRIBUTION_METHODS, LAYER_METHODS, Attribution, ExplainError
from workbench.explain.attributions import attribute
from workbench.explain.importance import layer_importance
from workbench.io import LoadError, load_data, load_model
from workbench.models import Demo, DemoMeta, ModelInfo, list_demos, load_demo
from workbench.progress import Progress, drain
from workbench.pruning.criteria import CRITERIA, Criterion, LayerContext, register_criterion
from workbench.pruning.granularity import GRANULARITIES, Granularity
from workbench.pruning.layers import PrunableLayer, find_prunable_layers
from workbench.pruning.plan import SCOPES, PlanError, PruningPlan
from workbench.recover import (
    RecoverError,
    Recovery,
    Schedule,
    TrainingStep,
    finetune,
    finetune_iter,
    masked_model,
    split_data,
)
from workbench.ship import (
    EXPORT_FORMATS,
    MASK_PREFIX,
    ChannelScatter,
    ChannelSelect,
    Compacted,
    Latency,
    Quantized,
    compact,
    export,
    export_bytes,
    export_formats,
    int8_available,
    latency,
    latency_table,
    onnxruntime_available,
    plan_latency,
    quantize,
    read_int8,
    read_plan,
    restore_torch_prune,
)

__all__ = [
    # sensitivity scans and budgets (workbench.analysis)
    "DEFAULT_LEVELS",
    "TARGET_KINDS",
    "Budget",
    "BudgetError",
    "Proposal",
    "ScanError",
    "ScanProgress",
    "iter_scan",
    "scan_iter",
    "sensitivity",
    "solve_budget",
    # analyses of a workbench: wb.attribute(bench, ...), wb.layer_importance(bench, ...)
    "attribute",
    "layer_importance",
    # recovery after pruning (workbench.recover)
    "RecoverError",
    "Recovery",
    "Schedule",
    "TrainingStep",
    "finetune",
    "finetune_iter",
    "masked_model",
    "split_data",
    # shipping: the compacted model, measured latency, exports (workbench.ship)
    "ChannelScatter",
    "ChannelSelect",
    "Compacted",
    "EXPORT_FORMATS",
    "Latency",
    "MASK_PREFIX",
    "Quantized",
    "compact",
    "export",
    "export_bytes",
    "export_formats",
    "int8_available",
    "latency",
    "latency_table",
    "onnxruntime_available",
    "plan_latency",
    "quantize",
    "read_int8",
    "read_plan",
    "restore_torch_prune",
    # progressive evaluation: an estimate on a fixed subset first (workbench.evaluate.estimate)
    "Estimate",
    "EvaluationCancelled",
    "EvaluationProgress",
    "estimator",
    "evaluate_iter",
    # the rest
    "ATTRIBUTION_METHODS",
    "CRITERIA",
    "GRANULARITIES",
    "HIGHER_IS_BETTER",
    "LAYER_METHODS",
    "PRIMARY_METRIC",
    "SCOPES",
    "Attribution",
    "Criterion",
    "Demo",
    "DemoMeta",
    "ExplainError",
    "Granularity",
    "LayerContext",
    "LoadError",
    "ModelInfo",
    "PlanError",
    "PrunableLayer",
    "Progress",
    "PruningPlan",
    "Report",
    "Workbench",
    "WorkbenchError",
    "drain",
    "find_prunable_layers",
    "list_demos",
    "load_data",
    "load_demo",
    "load_model",
    "register_criterion",
    "plots",
    "track",
]
