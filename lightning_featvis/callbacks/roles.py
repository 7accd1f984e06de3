"""The three roles a callback can take in a render, each a small base class with one abstract
method, so that the objective finds its penalties, augmentations and result consumers by type
and a misspelt override fails when the callback is built ("Can't instantiate abstract class").

Shapes (letters as in the architecture page): G targets in the group, k augmented copies per
target, C channels, s the model's input side, S the canvas side.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import lightning as L
import torch

from lightning_featvis.results import GroupResult
from lightning_featvis.targets import Target


class Penalty(L.Callback, ABC):
    """A regulariser added to every target's loss at every step (and to the final loss a
    group's result reports), e.g. :class:`~lightning_featvis.callbacks.TotalVariation`."""

    @abstractmethod
    def penalty(self, view: torch.Tensor, image: torch.Tensor, step: int) -> torch.Tensor:
        """Extra loss per target ``[G]`` from its model-sized view ``[G, C, s, s]`` and its
        whole canvas ``image`` ``[G, C, S, S]``, both in [0, 1] and differentiable, at step
        ``step`` of the group (0-based)."""


class ViewAugmentation(L.Callback, ABC):
    """Transforms the views before the model sees them (transformation robustness), e.g.
    :class:`~lightning_featvis.callbacks.AugmentationEnsemble`. Augmentations apply in the
    order of the Trainer's callbacks; the final, measured view is never augmented."""

    @abstractmethod
    def augment(self, views: torch.Tensor, targets: Sequence[Target | None], step: int) -> torch.Tensor:
        """The views the model sees, ``[G * k, C, s, s]`` (k copies per target, target-major),
        from ``views`` ``[G, C, s, s]`` of ``targets`` (``None``: a padding slot) at ``step``.
        Differentiable: the gradient flows back to the canvas."""


class GroupResultHook(L.Callback, ABC):
    """Consumes each finished group: writers (PNGs, manifest), TensorBoard images, reports."""

    @abstractmethod
    def on_target_group_end(self, trainer: L.Trainer, objective: L.LightningModule,
                            result: GroupResult) -> None:
        """Called on every rank when a group has finished, by ``objective`` (a
        :class:`~lightning_featvis.objectives.VisualizationObjective`), with the group gathered
        from every rank (``result.images`` ``[N, C, S, S]``; a text run's embeddings ``[N, T, D]``)."""
