from __future__ import annotations

from workbench.pruning.granularity.channel import Channel


class Group(Channel):
    """Whole output channels, removed together with every layer that shares them.

    A layer alone keeps its channels alive wherever they are added to another layer's (a
    residual block): removing them there saves nothing. Here the layers whose channels are
    added, concatenated into a depthwise convolution or otherwise coupled (found by
    Torch-Pruning's dependency graph and checked on the data) form one group, ranked by the
    mean over its layers of each layer's channel norm, and cut at the sparsity of its first
    layer. A layer in no group is cut exactly as `channel` cuts it.
    """

    name = "group"
    label = "Channel groups (coupled channels together)"
    description = (
        "Removes whole channels together with every layer that shares them (residual "
        "additions, depthwise convolutions), ranked over the group: the residual stream itself "
        "gets narrower, so the model really shrinks. A group follows its first layer's slider."
    )
    # A global ranking of groups against single layers is not defined here.
    ranks_globally = False
