"""The adapter of the zoos' small CNN (:class:`~lightning_featvis.zoo.networks.SmallConvNet`):
each zoo's CNN judge is this adapter with the zoo's architecture, normalisation and weights."""

from __future__ import annotations

from torch import nn

from lightning_featvis.models.adapter import Layout, ModelAdapter, load_into
from lightning_featvis.zoo.networks import SmallConvNet


class SmallCNN(ModelAdapter):
    """A :class:`~lightning_featvis.zoo.networks.SmallConvNet`: every ``features.*`` module and
    ``pool`` output a map ``[B, C, H, W]``, ``head`` the logits ``[B, K]``.

    Args:
        config: ``image_size``, ``channels`` (per conv block) and ``num_classes``.
        checkpoint: the weights to load, or ``None`` (random weights).
        mean: the input normalisation's per-channel mean.
        std: its per-channel std.
        model_name: name in file names and TensorBoard tags.
    """

    logits_layer = "head"

    def __init__(self, config: dict, checkpoint: str | None, mean: tuple[float, float, float],
                 std: tuple[float, float, float], model_name: str) -> None:
        self.config, self.checkpoint = dict(config), checkpoint
        self.mean, self.std, self.model_name = mean, std, model_name

    def build(self) -> nn.Module:
        net = SmallConvNet(channels=self.config["channels"], num_classes=self.config["num_classes"])
        return load_into(net, self.checkpoint) if self.checkpoint else net

    def layout(self, layer: str) -> Layout:
        return Layout("logits") if layer in ("", "head") else Layout("map")
