"""Grayscale pixel parameterization: one trainable channel shown to the model as RGB."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lightning_featvis.params.region import RegionImage


class GrayscaleImage(RegionImage):
    """One-channel pixel canvases, replicated to three identical channels for the model.

    For models trained on grey images (the digits models see grey replicated to RGB) a colour
    canvas wastes two thirds of its freedom on colours the model never saw; one channel keeps
    the optimisation inside the model's input distribution.

    Storage ``canvas`` ``[G, 1, S_max/d, S_max/d]`` (d: ``downsample``), allocated once; the
    active region is the top-left ``S/d x S/d``. :meth:`forward` returns ``[G, 3, S, S]`` raw values, like
    :class:`PixelImage`: no clamp here, because a clamp would kill the gradient of
    out-of-range pixels (the objective clamps only for output).

    Args:
        mean: mean of the initial pixel values (N(``mean``, ``std``) per pixel and canvas).
        std: std of the initial pixel values.

    Padding slots (seed None) hold ``mean``. :meth:`update_` applies ``fn`` to the 3-channel
    render and stores the channel mean.
    """

    stored_channels = 1
    distinct_channels = 1

    def __init__(self, mean: float = 0.7, std: float = 1 / 20, downsample: int = 1) -> None:
        super().__init__(downsample)
        self.mean, self.std = mean, std

    def initial(self, generator: torch.Generator | None, size: int) -> torch.Tensor:
        if generator is None:
            return torch.full((1, size, size), self.mean)
        return torch.randn((1, size, size), generator=generator) * self.std + self.mean

    def forward(self) -> torch.Tensor:
        # a view, not a copy: the three channels share the one trainable channel's gradient
        return self.upsampled(self.region()).expand(-1, self.channels, -1, -1)

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            # fn may edit its input in place (the blur callback does): give it its own memory
            before = self.upsampled(self.region())
            edited = fn(before.expand(-1, self.channels, -1, -1).clone())
            self.store_edit_(before, edited.mean(dim=1, keepdim=True))
