"""A pixel canvas that takes its form from the model's training data: grey or colour, the
resolution of the data's detail, its typical colour as the start."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lightning_featvis.data_statistics import data_statistics
from lightning_featvis.errors import FeatvisError
from lightning_featvis.params.color import decorrelated_to_rgb, rgb_to_decorrelated
from lightning_featvis.params.region import RegionImage


class DataImage(RegionImage):
    """Pixel canvases shaped by real images (:class:`~lightning_featvis.data_statistics.DataStatistics`
    of ``data`` at the model's input side, read when the run binds the canvas to its model):

    - **grey or colour**: one stored channel replicated to RGB when the data is grey (a colour
      canvas would spend two thirds of its freedom on colours the model never saw), else three
      channels stored in the decorrelated colour space (a step moves a principal colour, not one
      correlated RGB channel);
    - **resolution**: stored at the side at which the data has its detail
      (``detail_side``: 8 of the digits' 32 px, upsampled bilinearly as they were made; the
      full side for photos), so no finer pattern than the data's can form;
    - **start**: the data's typical pixel, each channel's median (the digits' black background,
      a photo's mean tone), plus N(0, ``std``) noise per stored value.

    Storage ``canvas`` ``[G, c, S_max/d, S_max/d]`` (c = 1 or 3, d = S / detail_side). Rendering
    returns raw values ``[G, 3, S, S]`` with no clamp or sigmoid (either would kill the gradient
    at the edges of the range; the objective clamps only for output, and a data prior keeps the
    values where the data's are).

    Args:
        data: the image source (:func:`~lightning_featvis.image_sources.image_source`); ``None``:
            the model's ``training_data``.
        std: std of the initial noise (stored units).
    """

    def __init__(self, data: str | None = None, std: float = 0.05) -> None:
        super().__init__(downsample=1)
        self.data, self.std = data, std
        self.start = torch.zeros(3)  # the data's median pixel, RGB
        self.colour = True

    def bind(self, network) -> None:
        super().bind(network)
        source = self.data or network.training_data
        if source is None:
            raise FeatvisError(f"DataImage: the model {network.name} declares no training data; give the canvas an "
                               "image source (data: a folder of images, hf:NAME, digits, photos)")
        stats = data_statistics(source, network.image_size)
        self.colour = stats.colour
        self.stored_channels = self.distinct_channels = 3 if stats.colour else 1
        self.downsample = network.image_size // stats.detail_side
        self.start = torch.tensor(stats.median, dtype=torch.float32)

    def _encode(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB values ``[..., 3, H, W]`` -> stored values (decorrelated colour, or grey)."""
        return rgb_to_decorrelated(rgb) if self.colour else rgb.mean(dim=-3, keepdim=True)

    def _decode(self, stored: torch.Tensor) -> torch.Tensor:
        return decorrelated_to_rgb(stored) if self.colour else stored.expand(-1, 3, -1, -1)

    def initial(self, generator: torch.Generator | None, size: int) -> torch.Tensor:
        start = self._encode(self.start.reshape(3, 1, 1).expand(3, size, size))
        if generator is None:
            return start
        return start + torch.randn(start.shape, generator=generator) * self.std

    def forward(self) -> torch.Tensor:
        return self._decode(self.upsampled(self.region()))

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            before = self.upsampled(self.region())
            edited = fn(self._decode(before).clone())  # fn may edit in place
            self.store_edit_(before, self._encode(edited.to(self.canvas.dtype)))
