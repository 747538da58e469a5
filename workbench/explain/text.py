"""Token-id inputs: gradients do not exist with respect to integers, so text models are explained
at their input embeddings (the `nn.Embedding` that turns ids into vectors).

A token's attribution is the attribution of its embedding vector summed over the hidden
dimension; padding is excluded. The baseline replaces every real token by the padding token,
so a path from the baseline to the text only moves the real tokens' embeddings, and padding
positions receive exactly zero.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workbench.explain._common import ExplainError, Forward

#: What the maps say about text, once.
TEXT_NOTE = (
    "Token ids have no gradient, so the maps are taken at the input embeddings: a token's score "
    "is its embedding's attribution summed over the hidden dimension, against a baseline that "
    "replaces every token by padding (padding itself is left out)."
)
#: What an embedding model's maps explain.
EMBEDDING_NOTE = (
    "An embedding model has no class to explain: the explained output is the cosine similarity "
    "of each model's embedding to the dense model's embedding of the same input (1 for the "
    "dense model itself), so the maps say which tokens build the embedding the dense model "
    "gives, and how much of it the pruned model still builds."
)


@dataclass(frozen=True)
class TokenInput:
    """Where a text model turns token ids into vectors, and which id is padding."""

    name: str  # the embedding's module path, e.g. "encoder.model.embeddings.word_embeddings"
    module: nn.Embedding
    pad_token_id: int | None

    def real(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, L) True at real tokens, False at padding."""
        if self.pad_token_id is None:
            return torch.ones_like(ids, dtype=torch.bool)
        return ids != self.pad_token_id

    @property
    def baseline_id(self) -> int:
        return 0 if self.pad_token_id is None else int(self.pad_token_id)

    def baseline(self, ids: torch.Tensor) -> torch.Tensor:
        """The ids with every token replaced by padding (Captum's baseline in input space)."""
        return torch.full_like(ids, self.baseline_id)

    def base_vector(self) -> torch.Tensor:
        """(D,) the baseline token's embedding: where the path through the embeddings starts."""
        return self.module.weight[self.baseline_id].detach()


def token_input(model: nn.Module) -> TokenInput:
    """The input embedding of a model fed token ids, or a clear error when it has none.

    A Hugging Face model names it (`get_input_embeddings`); otherwise the first `nn.Embedding`.
    Padding is the `pad_token_id` the model's wrapper masks, else the embedding's padding_idx.
    """
    modules = list(model.named_modules())
    found: nn.Module | None = None
    for _, module in modules:
        getter = getattr(module, "get_input_embeddings", None)
        if callable(getter):
            with contextlib.suppress(NotImplementedError, AttributeError):
                candidate = getter()
                if isinstance(candidate, nn.Embedding):
                    found = candidate
                    break
    if found is None:
        found = next((m for _, m in modules if isinstance(m, nn.Embedding)), None)
    if found is None:
        raise ExplainError(
            "the inputs are integers (token ids, say) and the model has no nn.Embedding that "
            "turns them into vectors, so there is nothing to attribute at: gradients with "
            "respect to integers do not exist"
        )
    name = next(n for n, m in modules if m is found)
    pad = None
    for _, module in modules:
        value = module.__dict__.get("pad_token_id")
        if isinstance(value, int) and not isinstance(value, bool):
            pad = value
            break
    if pad is None and found.padding_idx is not None:
        pad = int(found.padding_idx)
    return TokenInput(name, found, pad)


@contextlib.contextmanager
def embedding_path(token: TokenInput, alphas: torch.Tensor | None = None) -> Iterator[None]:
    """While active (in this thread only), the embedding's output becomes a leaf of the autograd
    graph, moved along the path base + α·(embedding − base), one α per row (None: α = 1)."""
    thread = threading.get_ident()

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != thread:
            return None
        out = output.detach()
        if alphas is not None:
            base = token.base_vector().to(out.dtype)
            shape = (-1,) + (1,) * (out.dim() - 1)
            out = base + alphas.to(out.dtype).reshape(shape) * (out - base)
        return out.requires_grad_(True)

    handle = token.module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class Similarity(nn.Module):
    """An embedding model's explained output: the cosine similarity of its embedding to a given
    reference (the dense model's embedding of the same input), one value per row."""

    def __init__(self, forward: Forward) -> None:
        super().__init__()
        self.forward_model = forward

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        out = self.forward_model(x)
        return F.cosine_similarity(out.flatten(1), reference.flatten(1).to(out.dtype), dim=1)


class FromEmbeddings(nn.Module):
    """The model as a function of its input embedding's output (Captum's input for neuron
    methods on text): `forward(embedded, ids, *rest)` runs `forward(ids, *rest)` with the
    embedding's output replaced by `embedded` (in this thread only)."""

    def __init__(self, forward: nn.Module, token: TokenInput) -> None:
        super().__init__()
        self.inner = forward
        self.token = token

    def forward(self, embedded: torch.Tensor, ids: torch.Tensor, *rest: torch.Tensor):
        thread = threading.get_ident()

        def hook(_module: nn.Module, _inputs: object, _output: torch.Tensor):
            return embedded if threading.get_ident() == thread else None

        handle = self.token.module.register_forward_hook(hook)
        try:
            return self.inner(ids, *rest)
        finally:
            handle.remove()
