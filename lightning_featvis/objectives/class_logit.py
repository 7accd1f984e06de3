"""Class images: maximise one class logit of the network's head."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.neuron import NeuronObjective
from lightning_featvis.params import ImageParam
from lightning_featvis.schedule import Octave


class ClassLogitObjective(NeuronObjective):
    """Find an image the network assigns to a class: targets ``class=0-9`` on the logits layer.

    ``loss_form="l1"`` is the seeds' ``|C - O_i|``; ``"mean"`` maximises ``O_i`` plainly.

    Args:
        image_l1: weight of the seeds' optional ``|a|_1`` penalty on the model-sized view
            (mean over pixels here, so the weight does not depend on the image size).
    """

    def __init__(
        self,
        network: ModelAdapter,
        loss_form: Literal["l1", "mean"] = "l1",
        constant: float = 200.0,
        reduction: Literal["sum", "mean"] = "sum",
        scale: float = 1.0,
        image_l1: float = 0.0,
        octaves: list[Octave] | None = None,
        param: ImageParam | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(
            network=network,
            layer=network.logits_layer,
            loss_form=loss_form,
            constant=constant,
            reduction=reduction,
            scale=scale,
            octaves=octaves,
            param=param,
            optimizer=optimizer,
        )
        self.image_l1 = image_l1

    def regularization(self, view: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.image_l1 * view.abs().flatten(1).mean(dim=1)
