"""A small convolutional digits classifier: an architecture-independent judge for the digits ViT.

Benchmarks score the class images a visualised model produces by how well models trained
independently of it classify them (Lucent-style "transfer" accuracy); a CNN shares neither the
ViT's weights nor its inductive biases.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_featvis.models.adapter import Layout, ModelAdapter, load_into
from lightning_featvis.models.digits import DIGITS_MEAN, DIGITS_STD

#: architecture of the embedded digits CNN (32x32 RGB input, three conv blocks, ~94k parameters)
DIGITS_CNN_CONFIG = dict(
    image_size=32,
    channels=(32, 64, 128),
    num_classes=10,
)
#: the shipped weights (trained by ``featvis fit --config configs/train_digits_cnn.yaml``)
DIGITS_CNN_CHECKPOINT = Path(__file__).parent / "checkpoints" / "digits_cnn.pt"


class DigitsConvNet(nn.Module):
    """``features`` (per block: 3x3 conv, BatchNorm, ReLU, 2x2 max-pool), global average
    ``pool`` and a linear ``head``.

    Module names: ``features.{4i}`` conv, ``features.{4i+1}`` BatchNorm, ``features.{4i+2}`` ReLU,
    ``features.{4i+3}`` max-pool of block ``i``; every one of them and ``pool`` outputs a map
    ``[B, C, H, W]`` (32 -> 16 -> 8 -> 4 px, then 1x1); ``head`` outputs the logits ``[B, K]``.
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


class DigitsCNN(ModelAdapter):
    """Embedded convolutional digits classifier (3 conv blocks of 32/64/128 channels with
    BatchNorm/ReLU/max-pool, global average pool, linear head) trained on scikit-learn's digits
    upsampled to 32x32 RGB, normalised to [-1, 1] like :class:`DigitsViT`.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    logits_layer = "head"

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        if checkpoint is None and pretrained:
            checkpoint = str(DIGITS_CNN_CHECKPOINT)
        self.config = dict(DIGITS_CNN_CONFIG)
        self.checkpoint = checkpoint
        self.mean, self.std = DIGITS_MEAN, DIGITS_STD
        self.model_name = "digits_cnn"

    def build(self) -> nn.Module:
        net = DigitsConvNet(channels=self.config["channels"], num_classes=self.config["num_classes"])
        return load_into(net, self.checkpoint) if self.checkpoint else net

    def layout(self, layer: str) -> Layout:
        if layer in ("", "head"):
            return Layout("logits")
        return Layout("map")
