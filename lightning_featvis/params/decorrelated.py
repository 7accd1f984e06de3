"""Decorrelated pixel parameterization: Lucent's ``pixel_image`` with ``decorrelate=True``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.params.base import ImageParam
from lightning_featvis.params.color import (
    decorrelated_to_rgb,
    rgb_to_decorrelated,
    squash,
    unsquash,
)


class DecorrelatedImage(ImageParam):
    """Pixels stored in the decorrelated colour space, before a sigmoid.

    A step on a stored value moves a principal colour component rather than one correlated
    RGB channel, and the sigmoid keeps every parameter value a valid image without the dead
    gradients of a clamp.

    Storage ``canvas`` ``[G, 3, S_max, S_max]``, allocated once; the active region is the
    top-left ``S x S``. Rendering: ``sigmoid(decorrelated_to_rgb(region))`` ``[G, 3, S, S]``.

    Args:
        sd: std of the initial stored values (N(0, sd), per canvas from its seed; near grey).

    Padding slots (seed None) hold zeros: a grey (0.5) canvas. :meth:`resize_` resamples the
    stored values; :meth:`update_` re-encodes the edited image exactly (up to the logit's clamp).
    """

    def __init__(self, sd: float = 0.01) -> None:
        super().__init__()
        self.sd = sd
        self.canvas = nn.Parameter(torch.empty(0, self.channels, 0, 0))
        self._size = 0

    def allocate(self, count: int, max_size: int) -> None:
        self.canvas = nn.Parameter(torch.zeros(count, self.channels, max_size, max_size))

    @property
    def size(self) -> int:
        return self._size

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a module that never ran setup has no storage yet: adopt the saved shape first
        saved = state_dict.get(prefix + "canvas")
        if saved is not None and saved.shape != self.canvas.shape:
            self.canvas = nn.Parameter(torch.zeros_like(saved, device=self.canvas.device))
            self._size = saved.shape[-1]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _region(self) -> torch.Tensor:
        return self.canvas[:, :, : self._size, : self._size]

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        shape = (self.channels, size, size)
        with torch.no_grad():
            self.canvas.zero_()
            for i, seed in enumerate(seeds):
                if seed is None:
                    continue
                gen = torch.Generator().manual_seed(seed)
                self.canvas[i, :, :size, :size] = (torch.randn(shape, generator=gen) * self.sd).to(self.canvas)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            grown = F.interpolate(self._region(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            self.canvas[:, :, :size, :size] = grown
        self._size = size

    def forward(self) -> torch.Tensor:
        return squash(decorrelated_to_rgb(self._region()))

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            edited = fn(self.forward())
            self._region().copy_(rgb_to_decorrelated(unsquash(edited.to(self.canvas.dtype))))
