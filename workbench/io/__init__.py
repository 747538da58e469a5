"""Bring your own model and validation data, safely.

import workbench.io as wio
model = wio.load_model("model.pt2")           # or weights + architecture="arch.py:build"
data = wio.load_data("val.csv", target="label")
report = wio.check(model, data)               # dry run, shapes, classes, NaN weights
*_, done = wio.build_workbench(model, data)   # progress events; the last has the bench
bench = done.bench
"""

from workbench.io.checks import (
    CheckReport,
    Finding,
    Prepared,
    Progress,
    build_workbench,
    check,
    model_info,
    prepare,
    run_build,
)
from workbench.io.data import (
    DATA_FORMATS,
    NORMALISATIONS,
    DataInfo,
    LoadedData,
    byte_tokenizer,
    csv_columns,
    detect_data_format,
    load_data,
    preview_images,
)
from workbench.io.models import (
    FORMATS,
    WEIGHT_FORMATS,
    LoadedModel,
    build_architecture,
    detect_format,
    fit_state_dict,
    load_factory,
    load_model,
)
from workbench.io.safety import (
    DEFAULT_LIMITS,
    ArchitectureError,
    CheckError,
    DataError,
    FormatError,
    Limits,
    LoadError,
    MissingDependencyError,
    SafeZip,
    SizeLimitError,
    Source,
    UnsafeFileError,
    as_source,
    scan_pickle,
)

__all__ = [
    "DATA_FORMATS",
    "DEFAULT_LIMITS",
    "FORMATS",
    "NORMALISATIONS",
    "WEIGHT_FORMATS",
    "ArchitectureError",
    "CheckError",
    "CheckReport",
    "DataError",
    "DataInfo",
    "Finding",
    "FormatError",
    "Limits",
    "LoadError",
    "LoadedData",
    "LoadedModel",
    "MissingDependencyError",
    "Prepared",
    "Progress",
    "SafeZip",
    "SizeLimitError",
    "Source",
    "UnsafeFileError",
    "as_source",
    "build_architecture",
    "build_workbench",
    "byte_tokenizer",
    "check",
    "csv_columns",
    "detect_data_format",
    "detect_format",
    "fit_state_dict",
    "load_data",
    "load_factory",
    "load_model",
    "model_info",
    "preview_images",
    "prepare",
    "run_build",
    "scan_pickle",
]
