"""Attention heads as coupled groups: a head's query, key and value rows and the output
projection's columns that read it go together.

A multi-head attention block splits its query, key and value projections into heads of
`head_size` rows each; head h of the output is `softmax(q_h k_hᵀ) v_h`, and the output
projection reads it through its columns h·size … (h+1)·size. Zeroing a head's q, k and v rows
(and biases) makes its output exactly zero (uniform attention over zero values), so the masked
model is the model with the head removed; `workbench.evaluate.groups` still checks that on the
data before a group is taken. The "channels" of such a group are heads.

Found by the layout the common attention modules share (Hugging Face's BERT/RoBERTa/MiniLM
`query`/`key`/`value` with the output projection at `<block>.output.dense`, DistilBERT's
`q_lin`/`k_lin`/`v_lin`/`out_lin`, the `q_proj`/`k_proj`/`v_proj`/`o_proj`/`out_proj` family):
a module with an integer head size whose three projections are prunable layers of the same
width, a multiple of it; and GPT-2's packed `c_attn` (one Conv1D writing q, k and v one after
the other, `split_size` wide each) with its `c_proj`. nn.MultiheadAttention's `in_proj_weight`
(no layer of its own) and grouped-query attention (fewer key/value heads) are not matched:
their layers are pruned alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from workbench.pruning.groups import ChannelGroup, Coupling
from workbench.pruning.layers import PrunableLayer

#: Names of the query, key and value projections, by family.
_QKV = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q_proj", "k_proj", "v_proj"))
#: Names of the output projection inside the attention module.
_OUT = ("out_lin", "out_proj", "o_proj")
#: Attributes holding the size of one head.
_HEAD_SIZE = ("attention_head_size", "head_dim", "head_size")


def attention_heads(model: nn.Module, layers: Mapping[str, PrunableLayer]) -> list[ChannelGroup]:
    """One group per attention block of `model` whose heads can be cut (see the module's
    docstring): members q, k, v (rows by head), their biases, the output projection's columns."""
    found = []
    for name, module in model.named_modules():
        size = next((getattr(module, a) for a in _HEAD_SIZE if hasattr(module, a)), None)
        if not isinstance(size, int) or size <= 0:
            continue
        prefix = f"{name}." if name else ""
        packed = _packed_heads(model, module, prefix, size, layers)
        if packed is not None:
            found.append(packed)
            continue
        qkv = next(
            (
                tuple(prefix + child for child in names)
                for names in _QKV
                if all(prefix + child in layers for child in names)
            ),
            None,
        )
        out = _output_projection(name, layers)
        if qkv is None or out is None:
            continue
        widths = {layers[n].shape[0] for n in qkv}
        width = widths.pop()
        if widths or width % size or layers[out].shape[1] != width or width == size:
            continue  # grouped-query attention, a packed layout, or a single head
        index = torch.arange(width)
        root = index // size
        members = tuple(Coupling(n, index, root, width) for n in qkv)
        zeroed = tuple(
            Coupling(f"{n}.bias", index, root, width)
            for n in qkv
            if getattr(model.get_submodule(n), "bias", None) is not None
        )
        consumers = (Coupling(out, index, root, width),)
        found.append(ChannelGroup(width // size, members, zeroed, consumers, unit="head"))
    return found


def _output_projection(name: str, layers: Mapping[str, PrunableLayer]) -> str | None:
    prefix = f"{name}." if name else ""
    inside = next((prefix + child for child in _OUT if prefix + child in layers), None)
    if inside is not None:
        return inside
    parent = name.rpartition(".")[0]  # BERT: <block>.self holds q, k, v; <block>.output.dense
    beside = f"{parent}.output.dense" if parent else "output.dense"
    return beside if name and beside in layers else None


def _packed_heads(
    model: nn.Module, module: nn.Module, prefix: str, size: int, layers: Mapping[str, PrunableLayer]
) -> ChannelGroup | None:
    """GPT-2's attention: `c_attn` writes q, k and v (`split_size` rows each, in the layer's
    (out, in) view), `c_proj` reads the heads' outputs; cross-attention (`q_attn`) is left."""
    width = getattr(module, "split_size", None)
    qkv, out = f"{prefix}c_attn", f"{prefix}c_proj"
    if (
        not isinstance(width, int)
        or hasattr(module, "q_attn")
        or qkv not in layers
        or out not in layers
        or layers[qkv].shape[0] != 3 * width
        or layers[out].shape[1] != width
        or width % size
        or width == size
    ):
        return None
    index = torch.arange(3 * width)
    root = (index % width) // size
    zeroed = (
        (Coupling(f"{qkv}.bias", index, root, 3 * width),)
        if getattr(model.get_submodule(qkv), "bias", None) is not None
        else ()
    )
    columns = torch.arange(width)
    consumers = (Coupling(out, columns, columns // size, width),)
    member = Coupling(qkv, index, root, 3 * width)
    return ChannelGroup(width // size, (member,), zeroed, consumers, unit="head")


def fit_attention(model: nn.Module) -> None:
    """After heads were cut out: the attention modules that split a packed projection by a
    stored width (GPT-2's `split_size`) read the new one from their projection."""
    for module in model.modules():
        qkv = getattr(module, "c_attn", None)
        if isinstance(getattr(module, "split_size", None), int) and qkv is not None:
            width = qkv.weight.shape[1] // 3  # Conv1D: (in, out)
            module.split_size = width
            if isinstance(getattr(module, "head_dim", None), int):
                module.num_heads = width // module.head_dim


#: (intermediate, output) layer names of a feed-forward block, relative to the module holding
#: both: GPT-2's MLP, DistilBERT's FFN, the fc1/fc2 family, BERT's layer.
_FFN = (
    ("c_fc", "c_proj"),
    ("lin1", "lin2"),
    ("fc1", "fc2"),
    ("intermediate.dense", "output.dense"),
)


def feed_forward(model: nn.Module, layers: Mapping[str, PrunableLayer]) -> list[ChannelGroup]:
    """One group per feed-forward block found by its layout (the dependency graph finds the
    same where it can trace the model, but not in GPT-2): the intermediate layer's rows (its
    neurons) with the output layer's input columns. The removal check decides whether the
    activation between them keeps a zeroed neuron at zero."""
    found = []
    for name, _ in model.named_modules():
        prefix = f"{name}." if name else ""
        for inner, outer in _FFN:
            up, down = prefix + inner, prefix + outer
            if up not in layers or down not in layers:
                continue
            width = layers[up].shape[0]
            if layers[down].shape[1] != width or layers[up].groups != 1:
                continue
            index = torch.arange(width)
            zeroed = (
                (Coupling(f"{up}.bias", index, index, width),)
                if getattr(model.get_submodule(up), "bias", None) is not None
                else ()
            )
            member = Coupling(up, index, index, width)
            consumer = Coupling(down, index, index, width)
            found.append(ChannelGroup(width, (member,), zeroed, (consumer,)))
    return found
