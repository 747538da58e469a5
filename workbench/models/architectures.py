"""The small architectures of the demo zoo.

Layers sit in named `nn.Sequential` blocks (or named attributes) so that layer names such as
`features.0` or `classifier.3` read well in the app. Every model is `torch.fx.symbolic_trace`-able:
no data-dependent control flow.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "DiabetesRegressor",
    "DigitsCNN",
    "LeNet300100",
    "MNIST1DCNN",
    "TabularMLP",
]


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions and a two-layer classifier for 8x8 digit images."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 4, 4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 8, 8)
        return self.classifier(self.features(x))


class LeNet300100(nn.Module):
    """The classic LeNet-300-100 fully connected network, here on flattened 8x8 digits."""

    def __init__(self, n_inputs: int = 64, n_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_inputs, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, n_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 64)
        return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))


class MNIST1DCNN(nn.Module):
    """Three 1-D convolutions and a linear classifier for 40-sample MNIST-1D signals."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, 32, 5, padding=2),  # (N, 32, 40)
            nn.ReLU(),
            nn.Conv1d(32, 64, 3, stride=2, padding=1),  # (N, 64, 20)
            nn.ReLU(),
            nn.Conv1d(64, 64, 3, stride=2, padding=1),  # (N, 64, 10)
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 10, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 1, 40)
        return self.classifier(self.features(x))


def _two_hidden_layers(n_inputs: int, n_outputs: int) -> nn.Sequential:
    """The tabular demos' body: 64 and 32 hidden units with ReLU (keys net.0, net.2, net.4)."""
    return nn.Sequential(
        nn.Linear(n_inputs, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, n_outputs),
    )


class TabularMLP(nn.Module):
    """A two-hidden-layer MLP for standardised tabular features."""

    def __init__(self, n_features: int = 30, n_classes: int = 2) -> None:
        super().__init__()
        self.net = _two_hidden_layers(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, n_features)
        return self.net(x)


class DiabetesRegressor(nn.Module):
    """A two-hidden-layer MLP whose output is mapped back to the target's original units."""

    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, n_features: int = 10) -> None:
        super().__init__()
        self.net = _two_hidden_layers(n_features, 1)
        # Buffers, not parameters: pruning and fine-tuning must never touch the unit conversion.
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, n_features) -> (N,)
        return self.net(x).squeeze(-1) * self.target_std + self.target_mean


#: Architecture class by name: the zoo's JSON names the class to build.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (DigitsCNN, LeNet300100, MNIST1DCNN, TabularMLP, DiabetesRegressor)
}
