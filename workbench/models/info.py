"""What the app and the CLI know about a model, whether a built-in demo or one a user brought."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    title: str
    description: str = ""
    task: str = "classification"  # "classification" | "regression"
    input_kind: str = "other"  # "image" | "signal" | "tabular" | "text" | "other"
    input_shape: tuple[int, ...] = ()  # per sample
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    target_name: str = ""
    dataset: str = ""
    n_train: int = 0
    n_val: int = 0
