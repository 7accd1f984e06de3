"""The zoos' own network: a small convolutional classifier (its adapters:
:class:`~lightning_featvis.zoo.digits.DigitsCNN`, :class:`~lightning_featvis.zoo.photos.PhotosCNN`),
an architecture-independent judge for the zoos' ViTs."""

from __future__ import annotations

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """``features`` (per block: 3x3 conv, BatchNorm, ReLU, 2x2 max-pool), global average
    ``pool`` and a linear ``head``.

    Module names: ``features.{4i}`` conv, ``features.{4i+1}`` BatchNorm, ``features.{4i+2}`` ReLU,
    ``features.{4i+3}`` max-pool of block ``i``; every one of them and ``pool`` outputs a map
    ``[B, C, H, W]`` (each block halves the side: 32 -> 16 -> 8 -> 4 px for three blocks on
    the digits, then 1x1); ``head`` outputs the logits ``[B, K]``.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for out in channels:
            layers += [
                nn.Conv2d(width, out, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                # not in-place: a hook on the BatchNorm must keep seeing its own output
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            width = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # flattening is not a module, so no addressable layer has an ambiguous [B, C] output
        return self.head(self.pool(self.features(x)).flatten(1))
