from __future__ import annotations

from workbench.pruning.granularity.channel import Channel


class Group(Channel):
    """Whole output channels, removed together with every layer that shares them.

    A layer alone keeps its channels alive wherever they are added to another layer's (a
    residual block): removing them there saves nothing. Here the layers whose channels are
    added, concatenated into a depthwise convolution or otherwise coupled (found by
    Torch-Pruning's dependency graph and checked on the data) form one group, ranked by the
    mean over its layers of each layer's channel norm, and cut at the sparsity of its first
    layer. An attention block's heads are a group too (its query, key and value rows by head,
    with the output projection's columns), and so are a feed-forward block's neurons (the
    intermediate layer's rows with the output layer's columns). A layer in no group is cut
    exactly as `channel` cuts it.
    """

    name = "group"
    label = "Channel groups (coupled channels together)"
    description = (
        "Removes whole channels together with every layer that shares them (residual "
        "additions, depthwise convolutions; a transformer's attention heads and feed-forward "
        "neurons), ranked over the group: the residual stream itself gets narrower, so the "
        "model really shrinks. A group follows its first layer's slider."
    )
    # The sliders (the global one included) set each group's leader; a ranking of groups
    # against each other across the model is not built: with scope="global" every group is cut
    # at its leader's value, as with scope="layer".
