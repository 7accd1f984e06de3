"""Decorrelated pixel parameterization: Lucent's ``pixel_image`` with ``decorrelate=True``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lightning_featvis.params.color import (
    decorrelated_to_rgb,
    rgb_to_decorrelated,
    squash,
    unsquash,
)
from lightning_featvis.params.region import RegionImage


class DecorrelatedImage(RegionImage):
    """Pixels stored in the decorrelated colour space, before a sigmoid.

    A step on a stored value moves a principal colour component rather than one correlated
    RGB channel, and the sigmoid keeps every parameter value a valid image without the dead
    gradients of a clamp.

    Storage ``canvas`` ``[G, 3, S_max/d, S_max/d]`` (d: ``downsample``), allocated once; the active region is the
    top-left ``S x S``. Rendering: ``sigmoid(decorrelated_to_rgb(upsampled(region)))`` ``[G, 3, S, S]``.

    Args:
        sd: std of the initial stored values (N(0, sd), per canvas from its seed; near grey).
        downsample: store the canvas at 1/d of its side, upsampled bilinearly before the
            colour transform (:class:`RegionImage`).

    Padding slots (seed None) hold zeros: a grey (0.5) canvas. :meth:`resize_` resamples the
    stored values; :meth:`update_` re-encodes the edited image exactly (up to the logit's clamp).
    """

    def __init__(self, sd: float = 0.01, downsample: int = 1) -> None:
        super().__init__(downsample)
        self.sd = sd

    def initial(self, generator: torch.Generator | None, size: int) -> torch.Tensor:
        if generator is None:
            return torch.zeros(self.stored_channels, size, size)
        return torch.randn((self.stored_channels, size, size), generator=generator) * self.sd

    def forward(self) -> torch.Tensor:
        return squash(decorrelated_to_rgb(self.upsampled(self.region())))

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            before = self.upsampled(self.region())
            edited = fn(squash(decorrelated_to_rgb(before)))
            self.store_edit_(before, rgb_to_decorrelated(unsquash(edited.to(self.canvas.dtype))))
