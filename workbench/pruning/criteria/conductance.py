from __future__ import annotations

from workbench.pruning.criteria._attribution import ChannelAttribution


class Conductance(ChannelAttribution):
    name = "conductance"
    label = "Conductance (Captum)"
    description = (
        "Removes the channels through which the least of the prediction flows: Captum's "
        "LayerConductance (Integrated Gradients at the layer) on the dense model, mean absolute "
        "over validation samples. Single weights: the channel's score split by |w|·‖x‖."
    )
    attribution = "conductance"
