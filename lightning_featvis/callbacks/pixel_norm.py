"""Pixel-norm penalty: pulls every pixel towards a background value (sparse images)."""

from __future__ import annotations

import torch

from lightning_featvis.callbacks.roles import Penalty
from lightning_featvis.errors import FeatvisError


class PixelNorm(Penalty):
    """Adds ``weight * mean(|view - target| ** p)`` to every target's loss, over the pixels of
    the model-sized view ``[G, C, s, s]`` (the alpha-norm of Mahendran & Vedaldi 2015).

    With ``p = 1`` and ``target`` the data's background (0, black, for the digits) it asks for
    the few strokes that the unit needs on an empty background, as real digits are, instead of
    grey texture everywhere: only pixels that raise the unit by more than ``weight`` per unit
    of brightness leave the background.

    Args:
        weight: penalty weight (per target; a mean over pixels, so it does not depend on size).
        p: the norm's exponent (1: sparse, 2: small energy; >= 1).
        target: the background value pixels are pulled towards, in [0, 1] pixel space.
    """

    def __init__(self, weight: float = 0.1, p: float = 1.0, target: float = 0.0) -> None:
        if weight < 0:
            raise FeatvisError(f"PixelNorm weight must be >= 0, got {weight}")
        if p < 1:
            raise FeatvisError(f"PixelNorm p must be >= 1 (a norm), got {p}")
        self.weight, self.p, self.target = weight, p, target

    def norm(self, view: torch.Tensor) -> torch.Tensor:
        """``mean(|view - target| ** p)`` per image ``[G]`` of ``[G, C, H, W]``."""
        return (view - self.target).abs().pow(self.p).flatten(1).mean(dim=1)

    def penalty(self, view: torch.Tensor, image: torch.Tensor, step: int) -> torch.Tensor:
        return self.weight * self.norm(view)
