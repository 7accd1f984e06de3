"""Maximise neurons of a layer: one neuron in all patches, sets of neurons, single patches."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.params import ImageParam
from lightning_featvis.schedule import Octave
from lightning_featvis.targets import Target


class NeuronObjective(VisualizationObjective):
    """Drive the units named by the targets (``neuron=5``, ``neuron=5 patch=12``, ``patch=12``,
    ``neuron=[0,1,2]``, ``class=3`` on a logits layer, ``all``).

    Args:
        layer: default layer for targets that name none, e.g. ``encoder.layers.encoder_layer_3``.
        loss_form: ``l1`` minimises ``sum |C - z|`` over the selected activations z (the seeds'
            L1 distance to a large constant); ``mean`` maximises their mean.
        constant: the constant ``C`` of the ``l1`` form.
        reduction: how the ``l1`` form combines the selected activations: ``sum`` (the seeds'
            formula; gradients grow with the unit's size, e.g. 64x for a neuron in all 64
            patches) or ``mean`` (comparable step sizes for units of any size, so one learning
            rate suits class logits and whole-layer units in the same run).
        scale: multiplies the loss (the seeds' scripts scale by 20).
        log_softmax_logits: units of a logits layer (``class=k``) are read as log-probabilities
            (log-softmax over the classes) instead of raw logits, so raising class k also means
            lowering the others: class images then show what separates k from the rest.
    """

    def __init__(
        self,
        network: ModelAdapter,
        layer: str | None = None,
        loss_form: Literal["l1", "mean"] = "l1",
        constant: float = 200.0,
        reduction: Literal["sum", "mean"] = "sum",
        scale: float = 1.0,
        log_softmax_logits: bool = False,
        octaves: list[Octave] | None = None,
        param: ImageParam | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(network=network, octaves=octaves, param=param, optimizer=optimizer)
        self.layer, self.loss_form, self.constant, self.scale = layer, loss_form, constant, scale
        self.reduction, self.log_softmax_logits = reduction, log_softmax_logits

    @property
    def default_layer(self) -> str | None:
        return self.layer

    def select(self, acts: dict[str, torch.Tensor], target: Target) -> torch.Tensor:
        if self.log_softmax_logits and self.network.layout(target.layer).kind == "logits":
            acts = {**acts, target.layer: acts[target.layer].float().log_softmax(dim=-1)}
        return super().select(acts, target)

    def loss(self, selected: torch.Tensor, target: Target) -> torch.Tensor:
        if self.loss_form == "l1":
            distance = (self.constant - selected).abs()
            return self.scale * (distance.sum(dim=1) if self.reduction == "sum" else distance.mean(dim=1))
        return -self.scale * selected.mean(dim=1)
