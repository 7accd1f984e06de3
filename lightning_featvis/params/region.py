"""Canvases stored as images: a max-size tensor whose top-left region is the active canvas."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.params.base import ImageParam


class RegionImage(ImageParam):
    """Base of the parameterizations that store one value per pixel: storage ``canvas``
    ``[G, stored_channels, S_max, S_max]`` allocated once (the parameter object never changes),
    the active canvas its top-left ``S x S`` region (pixels outside it get no gradient).

    Subclasses say how a canvas starts (:meth:`initial`) and how stored values render
    (:meth:`forward`) and re-encode (:meth:`update_`). Growing resamples the stored values.
    """

    stored_channels: int = 3

    def __init__(self) -> None:
        super().__init__()
        self.canvas = nn.Parameter(torch.empty(0, self.stored_channels, 0, 0))
        self._size = 0

    @abstractmethod
    def initial(self, generator: torch.Generator | None, size: int) -> torch.Tensor:
        """Stored values ``[stored_channels, size, size]`` of a fresh canvas drawn from
        ``generator``; ``None``: a padding slot's constant canvas."""

    def allocate(self, count: int, max_size: int) -> None:
        self.canvas = nn.Parameter(torch.zeros(count, self.stored_channels, max_size, max_size))

    @property
    def size(self) -> int:
        return self._size

    def region(self) -> torch.Tensor:
        """The stored values of the active canvases ``[G, stored_channels, S, S]`` (a view)."""
        return self.canvas[:, :, : self._size, : self._size]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        shape = self.adopt_saved_storage(state_dict, prefix, "canvas")
        if shape is not None:
            self._size = shape[-1]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        with torch.no_grad():
            self.canvas.zero_()
            for i, seed in enumerate(seeds):
                generator = torch.Generator().manual_seed(seed) if seed is not None else None
                self.canvas[i, :, :size, :size] = self.initial(generator, size).to(self.canvas)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            grown = F.interpolate(self.region(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            self.canvas[:, :, :size, :size] = grown
        self._size = size
