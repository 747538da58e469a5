from __future__ import annotations

from workbench.pruning.criteria._attribution import ChannelAttribution


class GradientActivation(ChannelAttribution):
    name = "gradient_x_activation"
    label = "Gradient × activation (Captum)"
    description = (
        "Removes the channels whose output times the prediction's gradient is smallest "
        "(Captum's LayerGradientXActivation on the dense model, mean absolute over validation "
        "samples): a first-order estimate of what losing the channel costs. Single weights: "
        "the channel's score split by |w|·‖x‖."
    )
    attribution = "gradient_x_activation"
