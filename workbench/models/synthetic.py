"""A synthetic scale workload: a 1.3M-parameter ResNet on 2,000 synthetic 32×32 images.

Built in about a second from seeds, nothing downloaded and nothing trained: the weights are a
seeded random initialisation, BatchNorm statistics are measured on the data, and the labels are
the model's own predictions with 20 % of them replaced, so accuracy (about 80 %) reacts to pruning
the way a trained model's does. The app offers it as the `scale-resnet` demo, and the benchmarks
use it to measure the engine at a realistic size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["DEMO_SEED", "SCALE_SAMPLES", "ScaleResNet", "scale_workload"]

#: Seed of the scale workload's weights, inputs and labels.
DEMO_SEED = 0
#: Validation samples of the scale workload.
SCALE_SAMPLES = 2000
#: Share of labels replaced by a different, random class: the dense model's accuracy is 1 - this.
LABEL_NOISE = 0.2


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and a residual connection (ResNet-18's block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:  # 1×1 projection to the new shape
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ScaleResNet(nn.Module):
    """ResNet-18's layout (four stages of two blocks) with narrow early stages.

    Parameters sit where they are cheap: a 3×3 weight costs 1,024 multiply-adds per sample at
    32×32 but 16 at 4×4. Widths 16/32/64/192 give 1.3M parameters for 45M multiply-adds per
    sample (ResNet-18's CIFAR widths 64/128/256/512: 11M parameters, 560M multiply-adds), so that
    2,000 samples run in about 1.5 s on two CPU cores.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 192), n_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(BasicBlock(channels, width, stride), BasicBlock(width, width, 1))
            )
            channels = width
        # Named like torchvision's ResNet: layer1.0.conv1, ..., layer4.1.conv2, fc.
        for i, stage in enumerate(stages, start=1):
            self.add_module(f"layer{i}", stage)
        self.n_stages = len(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: Tensor) -> Tensor:  # x: (N, 3, 32, 32)
        x = self.stem(x)
        for i in range(1, self.n_stages + 1):  # fixed at construction: traceable by torch.fx
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def scale_workload(
    samples: int = SCALE_SAMPLES, seed: int = DEMO_SEED
) -> tuple[nn.Module, tuple[Tensor, Tensor]]:
    """The scale model (in eval mode) and its validation set (inputs, long labels)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        model = ScaleResNet()
    inputs = _images(samples, generator)
    with torch.no_grad():
        _calibrate_batchnorm(model, inputs)
        logits = torch.cat([model(batch) for batch in inputs.split(500)])
        # Centre each class's mean logit so the model's predictions spread over all classes.
        model.fc.bias -= logits.mean(dim=0)
        labels = (logits - logits.mean(dim=0)).argmax(dim=1)
    n_classes = logits.shape[1]
    flip = torch.rand(samples, generator=generator) < LABEL_NOISE
    # A shift of 1..n-1 classes: a flipped label is always wrong for the dense model.
    shift = torch.randint(1, n_classes, (samples,), generator=generator)
    labels = torch.where(flip, (labels + shift) % n_classes, labels)
    return model.eval(), (inputs, labels)


def _images(samples: int, generator: torch.Generator) -> Tensor:
    """Smooth random images: 8×8 colour patterns upsampled to 32×32, plus pixel noise."""
    coarse = torch.randn(samples, 3, 8, 8, generator=generator)
    smooth = nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    noise = torch.randn(samples, 3, 32, 32, generator=generator)
    return smooth + 0.3 * noise


def _calibrate_batchnorm(model: nn.Module, inputs: Tensor, batch_size: int = 500) -> None:
    """Set BatchNorm running statistics to the data's: exact averages over a few batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average instead of an exponential one
    model.train()
    for batch in inputs.split(batch_size):
        model(batch)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
