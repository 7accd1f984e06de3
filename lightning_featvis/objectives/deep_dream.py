"""Deep dream: amplify what a unit sees in a photo, growing the photo over octaves."""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.cli import OptimizerCallable

from lightning_featvis.images import load_photo
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.neuron import NeuronObjective
from lightning_featvis.params import PhotoImage
from lightning_featvis.schedule import Octave


class DeepDreamObjective(NeuronObjective):
    """Drives a neuron, a patch or a whole layer (any unit) starting from a photo.

    The canvases are a :class:`PhotoImage` of ``photo``. Without ``octaves`` the render is the
    convnet recipe of the seeds, 3 octaves x 100 steps whose sizes grow geometrically from the
    model's input size to the photo's own (square-cropped) size, so the dream comes out at the
    photo's resolution. Everything else is :class:`NeuronObjective` (``loss_form``,
    ``constant``, ``reduction``, ``scale``).

    Args:
        photo: an image file, ``china.jpg`` / ``flower.jpg`` (bundled with scikit-learn) or
            ``digits:<i>``; ``None`` gives ``china.jpg``.
        stay_near: weight of a penalty ``stay_near * mean((canvas - photo)^2)`` over the whole
            canvas that keeps the dream close to the photo (0: off).
    """

    def __init__(
        self,
        network: ModelAdapter,
        photo: str | None = None,
        stay_near: float = 0.0,
        layer: str | None = None,
        loss_form: Literal["l1", "mean"] = "l1",
        constant: float = 200.0,
        reduction: Literal["sum", "mean"] = "mean",
        scale: float = 1.0,
        octaves: list[Octave] | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(
            network=network,
            layer=layer,
            loss_form=loss_form,
            constant=constant,
            reduction=reduction,
            scale=scale,
            octaves=octaves,
            param=PhotoImage(photo),
            optimizer=optimizer,
        )
        self.photo, self.stay_near = photo, stay_near
        self.default_octaves = octaves is None

    def prepare(self) -> None:
        if self.default_octaves:  # once: the octaves follow the photo's size
            self.octaves = self.photo_octaves(load_photo(self.photo).shape[-1])
            self.default_octaves = False
        super().prepare()

    def photo_octaves(self, photo_size: int, count: int = 3, steps: int = 100) -> list[Octave]:
        """``count`` octaves of ``steps`` whose sizes grow geometrically from the model's input
        size to ``photo_size`` (all at the input size when the photo is smaller)."""
        start = self.network.image_size
        end = max(photo_size, start)
        sizes = [round(start * (end / start) ** (i / (count - 1))) for i in range(count)]
        return [Octave(steps=steps, size=size) for size in sizes]

    def regularization(self, view: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        penalty = super().regularization(view, image)
        if self.stay_near:
            photo = self.param.photo(image.shape[-1])
            penalty = penalty + self.stay_near * (image - photo).square().flatten(1).mean(dim=1)
        return penalty
