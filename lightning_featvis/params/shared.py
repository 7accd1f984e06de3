"""Canvases that share part of their parameters: the frames of an interpolation (Lucid's
``channel_interpolate`` with its shared low-resolution tensors).

Each canvas is its own parameterization's image plus, for canvases of one *set*, a shared
low-resolution component: one tensor per set at 1/2, 1/4 and 1/8 of the canvas side, each
upsampled bilinearly and added. The shared part moves with the gradients of every frame of the
set, so the frames stay alike where their units agree, and an interpolation reads as one image
changing rather than n unrelated ones.

Shapes: G canvases, C channels, S the canvas side, M sets at most (one per canvas).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.params.base import ImageParam
from lightning_featvis.schedule import Octave

#: the shared components' sides, as divisors of the canvas side
SHARED_DIVISORS = (2, 4, 8)


class SharedImage(ImageParam):
    """``inner``'s canvases plus a low-resolution component shared by the canvases of one set.

    The objective wraps its parameterization in one when a run holds interpolations
    (:class:`~lightning_featvis.objectives.NeuronObjective`); :meth:`share_` says, per group,
    which canvases form a set. The shared components start at 0, so every canvas starts as its
    own parameterization starts it.

    Args:
        inner: the parameterization of each canvas's own part.
    """

    def __init__(self, inner: ImageParam) -> None:
        super().__init__()
        self.inner = inner
        self.channels = inner.channels
        self.shared = nn.ParameterList()
        self._sets = torch.zeros(0, dtype=torch.long)  # [G]: each canvas's set, -1: none

    # --- geometry: the inner parameterization's ------------------------------------------

    @property
    def view_size(self) -> int:  # type: ignore[override]
        return self.inner.view_size

    @view_size.setter
    def view_size(self, value: int) -> None:
        self.inner.view_size = value

    @property
    def view_position(self) -> torch.Tensor:  # type: ignore[override]
        return self.inner.view_position

    @view_position.setter
    def view_position(self, value: torch.Tensor) -> None:
        if "inner" in self._modules:  # ImageParam.__init__ sets it before inner exists
            self.inner.view_position = value

    def bind(self, network) -> None:
        self.inner.bind(network)

    def check_octaves(self, octaves: Sequence[Octave], model: str) -> None:
        self.inner.check_octaves(octaves, model)

    def canvas_size(self, octave: Octave) -> int:
        return self.inner.canvas_size(octave)

    @property
    def size(self) -> int:
        return self.inner.size

    def restore_size(self, size: int) -> None:
        self.inner.restore_size(size)

    # --- storage ---------------------------------------------------------------------------

    def allocate(self, count: int, max_size: int) -> None:
        self.inner.allocate(count, max_size)
        device = next(self.inner.parameters()).device
        self.shared = nn.ParameterList(
            # a grey parameterization's shared part is grey too (broadcast over its channels)
            nn.Parameter(torch.zeros(count, self.inner.distinct_channels, -(-max_size // d), -(-max_size // d),
                                     device=device))
            for d in SHARED_DIVISORS)
        self._sets = torch.full((count,), -1, dtype=torch.long)

    def share_(self, sets: Sequence[int | None]) -> None:
        """Canvas i belongs to set ``sets[i]`` (an index < G; ``None``: no set, its own image)."""
        self._sets = torch.tensor([-1 if s is None else s for s in sets], dtype=torch.long)

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        self.inner.reset_(seeds, size)
        with torch.no_grad():
            for part in self.shared:
                part.zero_()

    def resize_(self, size: int) -> None:
        old = self.size
        self.inner.resize_(size)
        if size == old:
            return
        with torch.no_grad():  # resample each shared part into its window at the new size
            for part, d in zip(self.shared, SHARED_DIVISORS):
                was, now = -(-old // d), -(-size // d)
                part[:, :, :now, :now] = F.interpolate(part[:, :, :was, :was], size=(now, now), mode="bilinear",
                                                       align_corners=False)

    def shared_image(self) -> torch.Tensor:
        """The shared components at the canvas size, per canvas ``[G, C, S, S]`` (0 outside sets)."""
        size = self.size
        total = None
        sets = self._sets.to(self.shared[0].device)
        member = (sets >= 0).to(self.shared[0].dtype).view(-1, 1, 1, 1)
        for part, d in zip(self.shared, SHARED_DIVISORS):
            side = -(-size // d)
            up = F.interpolate(part[sets.clamp(min=0), :, :side, :side], size=(size, size), mode="bilinear",
                               align_corners=False)
            total = up if total is None else total + up
        return total * member

    def forward(self) -> torch.Tensor:
        return self.inner() + self.shared_image()

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        # input-space edits (blur) act on the whole canvas: the canvas's own part takes the
        # change, the shared part stays as the set's
        shared = self.shared_image().detach()
        self.inner.update_(lambda own: fn(own + shared) - shared)
