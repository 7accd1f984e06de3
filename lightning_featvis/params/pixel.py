"""Pixel parameterization: the canvas values are the trainable pixels themselves."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lightning_featvis.errors import FeatvisError
from lightning_featvis.params.region import RegionImage


class PixelImage(RegionImage):
    """Canvases stored as raw pixels ``[G, C, S_max/d, S_max/d]`` (d: ``downsample``); the
    active region is the top-left ``S/d x S/d`` (pixels outside it get no gradient and so never
    move).

    Args:
        init: ``normal`` draws N(``mean``, ``std``) per pixel (the seeds' N(0.7, 1/20));
            ``uniform`` draws U(``mean`` - ``std``, ``mean`` + ``std``).
        mean: centre of the initial pixel values.
        std: spread of the initial pixel values.
        downsample: store the canvas at 1/d of its side, upsampled bilinearly
            (:class:`RegionImage`); 1: every pixel free.
    """

    def __init__(self, init: str = "normal", mean: float = 0.7, std: float = 1 / 20, downsample: int = 1) -> None:
        super().__init__(downsample)
        if init not in ("normal", "uniform"):
            raise FeatvisError(f"init must be 'normal' or 'uniform', got {init!r}")
        self.init, self.mean, self.std = init, mean, std

    def initial(self, generator: torch.Generator | None, size: int) -> torch.Tensor:
        shape = (self.stored_channels, size, size)
        if generator is None:
            return torch.full(shape, self.mean)
        if self.init == "normal":
            return torch.randn(shape, generator=generator) * self.std + self.mean
        return (torch.rand(shape, generator=generator) * 2 - 1) * self.std + self.mean

    def forward(self) -> torch.Tensor:
        return self.upsampled(self.region())

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            before = self.forward()
            # fn may edit its input in place (the blur callback does): give it its own memory
            self.store_edit_(before, fn(before.clone()))


class PhotoImage(PixelImage):
    """Pixel canvases that start from a photo instead of noise (deep dream).

    Every canvas starts as the photo, centre-cropped and resized to the first octave's size.
    When an octave grows the canvas, the photo is re-read at the new size and only what the
    optimisation added (canvas minus photo) is upsampled onto it, as classic DeepDream does
    between octaves: the photo stays sharp at every size instead of being blown up.

    Args:
        path: an image file, a photo bundled with scikit-learn (``china.jpg``,
            ``flower.jpg``) or ``digits:<i>``; ``None`` gives ``china.jpg``.
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.path = path
        self._photos: dict[int, torch.Tensor] = {}  # by size: every group starts from the same photo

    def photo(self, size: int) -> torch.Tensor:
        """The photo at ``size`` ``[1, C, size, size]`` on the canvas's device (read once per size)."""
        from lightning_featvis.images import load_photo

        if size not in self._photos:
            self._photos[size] = load_photo(self.path, size)
        return self._photos[size].to(self.canvas.device)

    def initial(self, generator: torch.Generator | None, size: int) -> torch.Tensor:
        return self.photo(size)[0]  # every canvas, padding included, starts as the photo

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            detail = self.region() - self.photo(self._size)
            detail = F.interpolate(detail, size=(size, size), mode="bilinear", align_corners=False)
            self.canvas[:, :, :size, :size] = self.photo(size) + detail
        self._size = size
