"""Maximise neurons of a layer: one neuron in all patches, sets of neurons, single patches."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.params import ImageParam
from lightning_featvis.schedule import Octave


class NeuronObjective(VisualizationObjective):
    """Drive the units named by the targets (``neuron=5``, ``neuron=5 patch=12``, ``patch=12``,
    ``neuron=[0,1,2]``, ``class=3`` on a logits layer, ``all``).

    Args:
        layer: default layer for targets that name none, e.g. ``encoder.layers.encoder_layer_3``.
        loss_form: ``l1`` minimises ``sum |C - z|`` over the selected activations z (the seeds'
            L1 distance to a large constant); ``mean`` maximises their mean.
        constant: the constant ``C`` of the ``l1`` form.
        scale: multiplies the loss (the seeds' scripts scale by 20).
    """

    def __init__(
        self,
        network: ModelAdapter,
        layer: str | None = None,
        loss_form: Literal["l1", "mean"] = "l1",
        constant: float = 200.0,
        scale: float = 1.0,
        octaves: list[Octave] | None = None,
        param: ImageParam | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(network=network, octaves=octaves, param=param, optimizer=optimizer)
        self.layer, self.loss_form, self.constant, self.scale = layer, loss_form, constant, scale

    @property
    def default_layer(self) -> str | None:
        return self.layer

    def loss(self, selected: torch.Tensor) -> torch.Tensor:
        if self.loss_form == "l1":
            return self.scale * (self.constant - selected).abs().sum(dim=1)
        return -self.scale * selected.mean(dim=1)
