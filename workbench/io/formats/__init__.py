"""Model and data formats: one module each, a class with `name`, `label`, `sniff(head)` and
`load(src, options)` and its own options dataclass, in the registries that io/models.py and
io/data.py walk (model: export, torchscript, weights, huggingface, pickled; data: arrays,
table, images, text)."""

from workbench.io.formats.base import Format, Head, Registry
from workbench.io.formats.loaded import ModelOptions

__all__ = ["Format", "Head", "ModelOptions", "Registry"]
