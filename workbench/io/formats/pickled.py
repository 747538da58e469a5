"""torch.save files: a state dict read with weights_only=True, or, only when the user trusts a
file of their own, a whole pickled model (unpickling runs code from the file: never an upload).

The legacy (pre-1.6) torch.save format and any pickle beyond tensors are refused from untrusted
files by `safety.torch_load`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from workbench.io.formats.base import Head
from workbench.io.formats.loaded import LoadedModel, ModelFormat
from workbench.io.formats.weights import WeightsOptions, load_weights
from workbench.io.safety import Source, looks_like_pickle, torch_load


@dataclass(frozen=True)
class PickleOptions(WeightsOptions):
    trust_pickle: bool = False  # the full unpickler runs code: never for uploads


class PickleFormat(ModelFormat, name="torch", options=PickleOptions):
    """A torch.save zip (its data.pkl) or a bare pickle stream."""

    label = "PyTorch pickle file"  # a state dict or a pickled model: the content says which

    def load(self, src: Source, options: PickleOptions) -> LoadedModel:
        obj = torch_load(src, trust=options.trust_pickle, what=f"the model file {src.name!r}")
        if not isinstance(obj, nn.Module):
            return load_weights(src, "state_dict", obj, options)
        warning = (
            "unpickled with the full unpickler because you trusted the file: any code in it has run"
        )
        return LoadedModel.of(obj, "pickle", src, warnings=(warning,))

    def sniff(self, head: Head) -> bool:
        if head.members is not None:
            return any(n.endswith("data.pkl") for n in head.members)
        return looks_like_pickle(head)
