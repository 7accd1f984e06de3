"""Maximise neurons of a layer: one neuron in all patches, sets of neurons, single patches, and
directions (``direction=sae[3]``)."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from lightning_featvis.directions import DirectionForm, DirectionSets
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.params import ImageParam
from lightning_featvis.params.shared import SharedImage
from lightning_featvis.schedule import Octave
from lightning_featvis.targets import Target


class NeuronObjective(VisualizationObjective):
    """Drive the units named by the targets (``neuron=5``, ``neuron=5 patch=12``, ``patch=12``,
    ``neuron=[0,1,2]``, ``class=3`` on a logits layer, ``all``, ``direction=sae[3]``).

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
        directions: named direction sets for ``direction=NAME[ROW]`` units: ``{name: file}``
            (a ``[D]`` vector or ``[K, D]`` matrix, ``.pt`` or ``.npy``; in Python also a
            tensor), see :mod:`lightning_featvis.directions`.
        direction_form: how a direction unit's tokens are projected: ``dot``, ``cosine`` or
            ``cossim`` (Lucid's dot times cosine to the power ``cossim_pow``).
        cossim_pow: the power of the ``cossim`` form.
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
        directions: dict[str, str] | None = None,
        direction_form: DirectionForm = "dot",
        cossim_pow: float = 1.0,
        octaves: list[Octave] | None = None,
        param: ImageParam | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(network=network, octaves=octaves, param=param, optimizer=optimizer)
        self.layer, self.loss_form, self.constant, self.scale = layer, loss_form, constant, scale
        self.reduction, self.log_softmax_logits = reduction, log_softmax_logits
        self.directions = DirectionSets(directions, direction_form, cossim_pow)

    @property
    def default_layer(self) -> str | None:
        return self.layer

    def configure_input(self) -> None:
        # an interpolation's frames share part of their parameters: wrap the canvases once
        if (self.plan is not None and any(t.shared is not None for t in self.plan.targets)
                and isinstance(self.param, ImageParam) and not isinstance(self.param, SharedImage)):
            self.param = SharedImage(self.param)
        super().configure_input()

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        # every batch, not only a new group's: a group taken up from a checkpoint is one too
        if isinstance(self.param, SharedImage):
            sets = [None if t is None else t.shared_set for t in self.targets]
            order = list(dict.fromkeys(s for s in sets if s is not None))
            self.param.share_([None if s is None else order.index(s) for s in sets])

    def unit_sizes(self, layer: str) -> dict:
        return self.directions.with_sizes(super().unit_sizes(layer))

    def check_unit(self, target: Target, tokens_shape: tuple[int, ...]) -> None:
        super().check_unit(target, tokens_shape)
        if target.unit.direction is not None:
            name, row = target.unit.direction
            self.directions.check(name, row, tokens_shape[-1], target.layer)

    def select(self, acts: dict[str, torch.Tensor], target: Target) -> torch.Tensor:
        if target.unit.direction is not None:  # [B, t]: each token projected on the direction
            return self.directions.select(acts[target.layer], self.network.layout(target.layer), target.unit)
        if self.log_softmax_logits and self.network.layout(target.layer).kind == "logits":
            acts = {**acts, target.layer: acts[target.layer].float().log_softmax(dim=-1)}
        return super().select(acts, target)

    def loss(self, selected: torch.Tensor, target: Target) -> torch.Tensor:
        if self.loss_form == "l1":
            distance = (self.constant - selected).abs()
            return self.scale * (distance.sum(dim=1) if self.reduction == "sum" else distance.mean(dim=1))
        return -self.scale * selected.mean(dim=1)
