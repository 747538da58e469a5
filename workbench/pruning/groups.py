"""Coupled channels: output channels of several layers that can only be removed together.

Two convolutions whose outputs are added (a residual block and its shortcut, the blocks of
one stage), or a convolution and the depthwise convolution after it, write the *same* channel:
it is gone only when every one of them drops it, and then everything that reads the channel
(the next convolutions' input columns, a BatchNorm on its way) loses it too. Such a set is a
`ChannelGroup`. The groups are found in the model by `workbench.evaluate.groups`; here they
are plain data: which entries of which tensors follow which of the group's channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True, eq=False)
class Coupling:
    """One dimension of one tensor that runs along a group's channels: its entries `index`
    follow the group's channels `root` (entry `index[i]` is gone when channel `root[i]` is)."""

    name: str  # a layer (members: output rows; consumers: input columns) or a tensor
    index: torch.Tensor  # long
    root: torch.Tensor  # long, as long as index
    size: int  # length of that dimension

    def removed(self, channels: torch.Tensor) -> torch.Tensor:
        """Bool per entry of the dimension, True where its channel is removed."""
        out = torch.zeros(self.size, dtype=torch.bool)
        out[self.index] = channels.cpu()[self.root]
        return out


@dataclass(frozen=True, eq=False)
class ChannelGroup:
    """Output channels shared by `members` (execution order; the first one leads: the plan's
    sparsity of the group is its sparsity), with what goes with them."""

    channels: int
    members: tuple[Coupling, ...]  # prunable layers losing output rows
    zeroed: tuple[Coupling, ...]  # per-channel tensors: biases, BatchNorm weight/bias/mean
    consumers: tuple[Coupling, ...]  # prunable layers losing input columns (weight dim 1)
    #: What one of its channels is: "channel", or "head" for an attention block's heads
    #: (each a slice of rows of the query, key and value projections).
    unit: str = "channel"

    @property
    def leader(self) -> str:
        return self.members[0].name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(member.name for member in self.members)

    def member(self, name: str) -> Coupling:
        return next(m for m in self.members if m.name == name)

    def consumer(self, name: str) -> Coupling | None:
        return next((c for c in self.consumers if c.name == name), None)

    def kept(
        self, channels: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """With `channels` removed: {module: kept output entries} of its members and of the
        modules holding its per-channel tensors, and {consumer: kept input columns}."""
        rows = {m.name: ~m.removed(channels) for m in self.members}
        rows |= {z.name.rsplit(".", 1)[0]: ~z.removed(channels) for z in self.zeroed}
        cols = {c.name: ~c.removed(channels) for c in self.consumers}
        return rows, cols


@dataclass(frozen=True, eq=False)
class ChannelGroups:
    """The model's coupled groups, and the layers whose channels are pruned alone, with why."""

    groups: tuple[ChannelGroup, ...] = ()
    #: {layer: why its channels are not coupled} for layers in no group (no reason: none
    #: needed, the layer's channels are its own).
    alone: Mapping[str, str] = field(default_factory=dict)

    def of(self, layer: str) -> ChannelGroup | None:
        return next((g for g in self.groups if layer in g.names), None)

    @property
    def followers(self) -> dict[str, str]:
        """{layer: its group's leader} for the members that do not lead: a `group` plan cuts
        them at their leader's sparsity, whatever it says for them."""
        return {name: g.leader for g in self.groups for name in g.names[1:]}

    def reading(self, layer: str) -> tuple[ChannelGroup, ...]:
        """The groups whose channels `layer` reads (it is one of their consumers)."""
        return tuple(g for g in self.groups if g.consumer(layer) is not None)
