"""Canvases stored as images: a max-size tensor whose top-left region is the active canvas."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.params.base import ImageParam


class RegionImage(ImageParam):
    """Base of the parameterizations that store one value per pixel: storage ``canvas``
    ``[G, stored_channels, S_max, S_max]`` allocated once (the parameter object never changes),
    the active canvas its top-left ``S x S`` region (pixels outside it get no gradient).

    Subclasses say how a canvas starts (:meth:`initial`) and how stored values render
    (:meth:`forward`) and re-encode (:meth:`update_`). Growing resamples the stored values.

    With ``downsample`` d > 1 the canvas is stored at ``S/d x S/d`` and rendered by bilinear
    upsampling (:meth:`upsampled`): a resolution prior, Lucid's ``lowres_tensor``. It suits
    data made the same way: the digits models see 8x8 digits upsampled bilinearly to 32x32,
    so ``downsample: 4`` gives the canvas exactly the data's degrees of freedom, and no
    pixel-scale pattern the data never had can exist. Canvas sides must be multiples of d.
    """

    stored_channels: int = 3

    def __init__(self, downsample: int = 1) -> None:
        super().__init__()
        if downsample < 1:
            raise FeatvisError(f"downsample must be a whole number >= 1 (1: full resolution), got {downsample}")
        self.downsample = downsample
        self.canvas = nn.Parameter(torch.empty(0, self.stored_channels, 0, 0))
        self._size = 0

    @abstractmethod
    def initial(self, generator: torch.Generator | None, size: int) -> torch.Tensor:
        """Stored values ``[stored_channels, size, size]`` of a fresh canvas drawn from
        ``generator``; ``None``: a padding slot's constant canvas."""

    def stored_side(self, size: int) -> int:
        """The stored side of a canvas ``size`` pixels a side (``size / downsample``)."""
        if size % self.downsample:
            raise FeatvisError(
                f"canvas side {size} is not a multiple of downsample={self.downsample}: choose octave "
                f"sizes (and a model input size) divisible by {self.downsample}, or downsample: 1"
            )
        return size // self.downsample

    def allocate(self, count: int, max_size: int) -> None:
        side = self.stored_side(max_size)
        self.canvas = nn.Parameter(torch.zeros(count, self.stored_channels, side, side))

    @property
    def size(self) -> int:
        return self._size

    def region(self) -> torch.Tensor:
        """The stored values of the active canvases ``[G, stored_channels, S/d, S/d]`` (a view)."""
        side = self._size // self.downsample
        return self.canvas[:, :, :side, :side]

    def upsampled(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored values ``[G, c, S/d, S/d]`` at the canvas side ``[G, c, S, S]`` (bilinear, as
        the digits are made from 8x8; the identity when d = 1)."""
        if self.downsample == 1:
            return stored
        return F.interpolate(stored, size=(self._size, self._size), mode="bilinear", align_corners=False)

    def store_edit_(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """Write an image-space edit into the stored values (no gradient): ``before`` is
        ``upsampled(region())`` and ``after`` the edited version, both ``[G, c, S, S]`` in stored
        units. With d > 1 the change is averaged over each d x d cell and added, so an edit that
        changes nothing leaves the canvas exactly as it was."""
        with torch.no_grad():
            region = self.region()
            if self.downsample == 1:
                region.copy_(after)
            else:
                region.add_(F.interpolate(after - before, size=region.shape[-2:], mode="area"))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        shape = self.adopt_saved_storage(state_dict, prefix, "canvas")
        if shape is not None:
            self._size = shape[-1] * self.downsample
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        with torch.no_grad():
            self.canvas.zero_()
            side = self.stored_side(size)
            for i, seed in enumerate(seeds):
                generator = torch.Generator().manual_seed(seed) if seed is not None else None
                self.canvas[i, :, :side, :side] = self.initial(generator, side).to(self.canvas)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        side = self.stored_side(size)
        with torch.no_grad():
            grown = F.interpolate(self.region(), size=(side, side), mode="bilinear", align_corners=False, antialias=True)
            self.canvas[:, :, :side, :side] = grown
        self._size = size
