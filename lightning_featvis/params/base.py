"""The interface every image parameterization implements."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import nn


class ImageParam(nn.Module):
    """Holds the canvases of one group of targets: the only trainable tensor of a run.

    A canvas may be larger than the model input (cropped octaves); its current side is
    :attr:`size` and it can grow between octaves with :meth:`resize_`. Storage is allocated once
    at the largest size so the parameter object never changes (DDP and optimizers hold on to it).
    """

    channels: int = 3

    @abstractmethod
    def allocate(self, count: int, max_size: int) -> None:
        """Create storage for ``count`` canvases of up to ``max_size`` pixels a side."""

    @abstractmethod
    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        """Re-initialise every canvas at side ``size``; canvas i from a generator seeded by
        ``seeds[i]`` (``None``: a padding slot, filled with a constant)."""

    @abstractmethod
    def resize_(self, size: int) -> None:
        """Grow every canvas to ``size`` pixels a side, resampling its content."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Current canvas side in pixels."""

    def restore_size(self, size: int) -> None:
        """Set the canvas side after loading a checkpoint's storage (whose values hold the
        canvases at that side; every parameterization keeps its side in ``_size``)."""
        self._size = size

    @abstractmethod
    def forward(self) -> torch.Tensor:
        """The rendered canvases ``[G, C, S, S]`` in [0, 1] pixel space (differentiable)."""

    def adopt_saved_storage(self, state_dict: dict, prefix: str, name: str) -> torch.Size | None:
        """Before loading a state dict: a module that never ran setup (``ddp_spawn``'s parent
        process, a resumed run) has no storage yet, so replace parameter ``name`` by zeros of
        the saved shape. Returns that shape when it did (the caller sets its size), else None."""
        saved = state_dict.get(prefix + name)
        current = getattr(self, name)
        if saved is None or saved.shape == current.shape:
            return None
        setattr(self, name, nn.Parameter(torch.zeros_like(saved, device=current.device)))
        return saved.shape

    @abstractmethod
    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace the rendered canvases by ``fn(canvases)`` (no gradient): blur and other
        image-space regularisers edit the image through this."""
