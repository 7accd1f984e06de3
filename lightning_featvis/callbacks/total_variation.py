"""Total-variation penalty: discourages high-frequency noise in the image."""

from __future__ import annotations

import torch

from lightning_featvis.callbacks.roles import Penalty
from lightning_featvis.errors import FeatvisError


class TotalVariation(Penalty):
    """Adds ``weight * TV(view)`` to every target's loss, with ``TV`` the mean absolute
    difference between neighbouring pixels (both axes) of the model-sized view ``[G, C, s, s]``.

    Args:
        weight: penalty weight (per target; the loss is a mean over pixels, so it does not
            depend on the image size).
    """

    def __init__(self, weight: float = 0.05) -> None:
        if weight < 0:
            raise FeatvisError(f"TotalVariation weight must be >= 0, got {weight}")
        self.weight = weight

    @staticmethod
    def total_variation(view: torch.Tensor) -> torch.Tensor:
        """Mean absolute neighbour difference per image ``[G]`` of ``[G, C, H, W]``."""
        dy = (view[..., 1:, :] - view[..., :-1, :]).abs().flatten(1).mean(dim=1)
        dx = (view[..., :, 1:] - view[..., :, :-1]).abs().flatten(1).mean(dim=1)
        return dy + dx

    def penalty(self, view: torch.Tensor, image: torch.Tensor, step: int) -> torch.Tensor:
        return self.weight * self.total_variation(view)
