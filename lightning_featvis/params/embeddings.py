"""Input embeddings as the trainable tensor: the text counterpart of a canvas."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.params.base import InputParam
from lightning_featvis.schedule import Octave


class EmbeddingSequence(InputParam):
    """The input embedding sequences of one group of text targets, ``[G, T, D]``: the only
    trainable tensor of a text run, the sibling of an image's canvases. :attr:`size` is the
    number of token positions ``T`` (:attr:`length`, the longest sentence of the run); the
    model sees the whole sequence, and octaves cannot change its length.

    A sequence starts as noise N(0, ``std``) per value, drawn from its target's seed. The text
    objective may then mix in the target sentence's own embeddings (``start: mix``).

    Args:
        std: spread of the initial noise; ``None``: the standard deviation of the model's token
            embedding matrix (so the noise has the scale of real tokens).
    """

    channels = 0  # not an image

    def __init__(self, std: float | None = None) -> None:
        super().__init__()
        if std is not None and std < 0:
            raise FeatvisError(f"std must be >= 0, got {std}")
        self.std = std
        self.width = 0  # D: set by the objective from the model before allocate
        self.length = 0  # T: the longest sentence's tokens, set by the objective
        self.scale = 1.0 if std is None else std  # the noise's spread; the objective sets it for std=None
        self.embeddings = nn.Parameter(torch.empty(0, 0, 0))
        self._size = 0

    def allocate(self, count: int, max_size: int) -> None:
        if self.width < 1:
            raise FeatvisError("EmbeddingSequence needs the model's embedding width before allocate (set .width)")
        self.embeddings = nn.Parameter(torch.zeros(count, max_size, self.width))

    @property
    def size(self) -> int:
        return self._size

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        with torch.no_grad():
            self.embeddings.zero_()
            for i, seed in enumerate(seeds):
                if seed is None:
                    continue  # a padding slot stays zero
                generator = torch.Generator().manual_seed(seed)
                noise = torch.randn((size, self.width), generator=generator) * self.scale
                self.embeddings[i, :size] = noise.to(self.embeddings)
        self._size = size

    def resize_(self, size: int) -> None:
        if size != self._size:
            raise FeatvisError("a text run has one sequence length: octaves cannot change it (leave octave size unset)")

    def check_octaves(self, octaves: Sequence[Octave], model: str) -> None:
        for octave in octaves:
            if octave.size is not None:
                raise FeatvisError(f"text octaves take no size (a sentence has one length), got {octave}")

    def canvas_size(self, octave: Octave) -> int:
        return self.length

    def views(self, inputs: torch.Tensor, centred: bool = False) -> torch.Tensor:
        return inputs  # the model sees the whole sequence

    def forward(self) -> torch.Tensor:
        """The embedding sequences ``[G, T, D]`` (differentiable)."""
        return self.embeddings[:, : self._size]

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            self.embeddings[:, : self._size] = fn(self.forward().clone())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        shape = self.adopt_saved_storage(state_dict, prefix, "embeddings")
        if shape is not None:
            self.width, self._size = shape[-1], shape[1]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
