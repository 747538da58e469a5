"""Model and data formats: one class each, in a registry that load_model and load_data consult."""

from workbench.io.formats.base import Format, ModelOptions, Registry

__all__ = ["Format", "ModelOptions", "Registry"]
