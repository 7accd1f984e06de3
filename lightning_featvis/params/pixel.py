"""Pixel parameterization: the canvas values are the trainable pixels themselves."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.params.base import ImageParam


class PixelImage(ImageParam):
    """Canvases stored as raw pixels ``[G, C, S_max, S_max]``; the active region is the
    top-left ``S x S`` (pixels outside it get no gradient and so never move).

    Args:
        init: ``normal`` draws N(``mean``, ``std``) per pixel (the seeds' N(0.7, 1/20));
            ``uniform`` draws U(``mean`` - ``std``, ``mean`` + ``std``).
        mean: centre of the initial pixel values.
        std: spread of the initial pixel values.
    """

    def __init__(self, init: str = "normal", mean: float = 0.7, std: float = 1 / 20) -> None:
        super().__init__()
        if init not in ("normal", "uniform"):
            raise ValueError(f"init must be 'normal' or 'uniform', got {init!r}")
        self.init, self.mean, self.std = init, mean, std
        self.canvas = nn.Parameter(torch.empty(0, self.channels, 0, 0))
        self._size = 0

    def allocate(self, count: int, max_size: int) -> None:
        self.canvas = nn.Parameter(torch.zeros(count, self.channels, max_size, max_size))

    @property
    def size(self) -> int:
        return self._size

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a module that never ran setup (ddp_spawn's parent process, a resumed run) has no
        # storage yet: take the saved canvases' shape before copying them in
        saved = state_dict.get(prefix + "canvas")
        if saved is not None and saved.shape != self.canvas.shape:
            self.canvas = nn.Parameter(torch.zeros_like(saved, device=self.canvas.device))
            self._size = saved.shape[-1]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        shape = (self.channels, size, size)
        with torch.no_grad():
            self.canvas.zero_()
            for i, seed in enumerate(seeds):
                if seed is None:
                    self.canvas[i, :, :size, :size] = self.mean
                    continue
                gen = torch.Generator().manual_seed(seed)
                if self.init == "normal":
                    values = torch.randn(shape, generator=gen) * self.std + self.mean
                else:
                    values = (torch.rand(shape, generator=gen) * 2 - 1) * self.std + self.mean
                self.canvas[i, :, :size, :size] = values.to(self.canvas.device)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            current = self.canvas[:, :, : self._size, : self._size]
            grown = F.interpolate(current, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            self.canvas[:, :, :size, :size] = grown
        self._size = size

    def forward(self) -> torch.Tensor:
        return self.canvas[:, :, : self._size, : self._size]

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            region = self.canvas[:, :, : self._size, : self._size]
            region.copy_(fn(region.clone()))


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

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        with torch.no_grad():
            self.canvas.zero_()
            self.canvas[:, :, :size, :size] = self.photo(size)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            detail = self.canvas[:, :, : self._size, : self._size] - self.photo(self._size)
            detail = F.interpolate(detail, size=(size, size), mode="bilinear", align_corners=False)
            self.canvas[:, :, :size, :size] = self.photo(size) + detail
        self._size = size
