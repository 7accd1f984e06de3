"""Grayscale pixel parameterization: one trainable channel shown to the model as RGB."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.params.base import ImageParam


class GrayscaleImage(ImageParam):
    """One-channel pixel canvases, replicated to three identical channels for the model.

    For models trained on grey images (the digits models see grey replicated to RGB) a colour
    canvas wastes two thirds of its freedom on colours the model never saw; one channel keeps
    the optimisation inside the model's input distribution.

    Storage ``canvas`` ``[G, 1, S_max, S_max]``, allocated once; the active region is the
    top-left ``S x S``. :meth:`forward` returns ``[G, 3, S, S]`` raw values, like
    :class:`PixelImage`: no clamp here, because a clamp would kill the gradient of
    out-of-range pixels (the objective clamps only for output).

    Args:
        mean: mean of the initial pixel values (N(``mean``, ``std``) per pixel and canvas).
        std: std of the initial pixel values.

    Padding slots (seed None) hold ``mean``. :meth:`update_` applies ``fn`` to the 3-channel
    render and stores the channel mean.
    """

    def __init__(self, mean: float = 0.7, std: float = 1 / 20) -> None:
        super().__init__()
        self.mean, self.std = mean, std
        self.canvas = nn.Parameter(torch.empty(0, 1, 0, 0))
        self._size = 0

    def allocate(self, count: int, max_size: int) -> None:
        self.canvas = nn.Parameter(torch.zeros(count, 1, max_size, max_size))

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
        with torch.no_grad():
            self.canvas.zero_()
            for i, seed in enumerate(seeds):
                if seed is None:
                    self.canvas[i, :, :size, :size] = self.mean
                    continue
                gen = torch.Generator().manual_seed(seed)
                values = torch.randn((1, size, size), generator=gen) * self.std + self.mean
                self.canvas[i, :, :size, :size] = values.to(self.canvas)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            grown = F.interpolate(self._region(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            self.canvas[:, :, :size, :size] = grown
        self._size = size

    def forward(self) -> torch.Tensor:
        # a view, not a copy: the three channels share the one trainable channel's gradient
        return self._region().expand(-1, self.channels, -1, -1)

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            # fn may edit its input in place (the blur callback does): give it its own memory
            edited = fn(self.forward().clone())
            self._region().copy_(edited.mean(dim=1, keepdim=True))
