"""The interfaces every parameterization implements: :class:`InputParam` (any input: the
storage of one group's trainable inputs and their geometry) and :class:`ImageParam` (canvases
with model-sized views in them)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.schedule import Octave

if TYPE_CHECKING:
    from lightning_featvis.models.adapter import ModelAdapter


class InputParam(nn.Module, ABC):
    """Holds the inputs of one group of targets: the only trainable tensor of a run.

    It owns the input's storage (allocated once at the largest size, so the parameter object
    never changes: DDP and optimizers hold on to it) and its geometry: how large the input is
    in each octave (:meth:`canvas_size`), which part of it the model sees (:meth:`views`) and
    what a finished target's result is (:meth:`rendered`). Images are :class:`ImageParam`;
    a text run's input embeddings are
    :class:`~lightning_featvis.params.embeddings.EmbeddingSequence`.
    """

    #: colour channels of the rendered input (0: not an image)
    channels: int = 3

    # --- storage -------------------------------------------------------------------------

    @abstractmethod
    def allocate(self, count: int, max_size: int) -> None:
        """Create storage for ``count`` inputs of up to ``max_size`` (pixels a side, or tokens)."""

    @abstractmethod
    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        """Re-initialise every input at size ``size``; input i from a generator seeded by
        ``seeds[i]`` (``None``: a padding slot, filled with a constant)."""

    @abstractmethod
    def resize_(self, size: int) -> None:
        """Grow every input to ``size``, resampling its content."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Current size (canvas side in pixels, or token positions)."""

    def restore_size(self, size: int) -> None:
        """Set the size after loading a checkpoint's storage (whose values hold the inputs at
        that size; every parameterization keeps its size in ``_size``)."""
        self._size = size

    @abstractmethod
    def forward(self) -> torch.Tensor:
        """The group's inputs, differentiable: canvases ``[G, C, S, S]`` in [0, 1] pixel space,
        or embeddings ``[G, T, D]``."""

    @abstractmethod
    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace the rendered inputs by ``fn(inputs)`` (no gradient): blur and other
        input-space regularisers edit the input through this."""

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

    # --- geometry --------------------------------------------------------------------------

    @abstractmethod
    def check_octaves(self, octaves: Sequence[Octave], model: str) -> None:
        """Refuse octaves this input cannot follow (``model``: the model's name, for messages)."""

    @abstractmethod
    def canvas_size(self, octave: Octave) -> int:
        """The input's size during ``octave``."""

    @abstractmethod
    def views(self, inputs: torch.Tensor, centred: bool = False) -> torch.Tensor:
        """What the model sees of ``inputs`` (:meth:`forward`'s output): model-sized views
        ``[G, C, s, s]`` where the views are placed now (``centred``: in the middle, as a
        finished result is measured), or the whole sequence ``[G, T, D]``."""

    def rendered(self) -> torch.Tensor:
        """The group's results as they are written, detached (images clamped to [0, 1])."""
        return self().detach()


class ImageParam(InputParam):
    """Canvases ``[G, C, S, S]``, possibly larger than the model input (cropped octaves): the
    model sees a model-sized window of each (its *view*, side s = :attr:`view_size`) whose
    place in the canvas (:attr:`view_position`) :class:`~lightning_featvis.callbacks.PositionalJitter`
    moves. The canvas side :attr:`size` can grow between octaves with :meth:`resize_`.
    """

    #: the model's input side s (the objective sets it from its model in setup)
    view_size: int = 0
    #: how many of the rendered channels vary independently (1: one grey channel replicated)
    distinct_channels: int = 3

    def __init__(self) -> None:
        super().__init__()
        # where each target's view sits in its canvas, as fractions of the free room ``[G, 2]``
        # (y, x; 0.5 = centred)
        self.view_position = torch.full((0, 2), 0.5)

    def bind(self, network: ModelAdapter) -> None:
        """Learn what the canvases need from the model (before storage is allocated): its input
        side (:attr:`view_size`); parameterizations that adapt to the model's data read more."""
        self.view_size = network.image_size

    def place_views(self, position: torch.Tensor) -> None:
        """Put the views at ``position`` ``[G, 2]`` (fractions of the free room, 0.5: centred)."""
        self.view_position = position

    def centre_views(self, count: int) -> None:
        """Put ``count`` views in the middle of their canvases."""
        self.view_position = torch.full((count, 2), 0.5)

    def view_offsets(self, position: torch.Tensor | None = None) -> list[tuple[int, int]]:
        """Top-left ``(y, x)`` of each target's view in its canvas, from fractions of the free
        room ``[G, 2]`` (default: :attr:`view_position`)."""
        room = self.size - self.view_size
        position = self.view_position if position is None else position
        return [(min(int(fy * (room + 1)), room), min(int(fx * (room + 1)), room)) for fy, fx in position.tolist()]

    def crop(self, image: torch.Tensor, offsets: list[tuple[int, int]]) -> torch.Tensor:
        """Model-sized views ``[G, C, s, s]`` of canvases ``[G, C, S, S]`` at ``offsets``."""
        s = self.view_size
        if image.shape[-1] == s:
            return image
        return torch.stack([image[i, :, y : y + s, x : x + s] for i, (y, x) in enumerate(offsets)])

    def views(self, inputs: torch.Tensor, centred: bool = False) -> torch.Tensor:
        position = torch.full((inputs.shape[0], 2), 0.5) if centred else None
        return self.crop(inputs, self.view_offsets(position))

    def update_views_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace each view (where the views are now) by ``fn(view)`` ``[C, s, s]`` or, when
        the canvas is model-sized, all canvases by ``fn(canvases)`` ``[G, C, s, s]``."""
        s = self.view_size
        offsets = self.view_offsets()

        def edit(canvas: torch.Tensor) -> torch.Tensor:
            if canvas.shape[-1] == s:
                return fn(canvas)
            for i, (y, x) in enumerate(offsets):
                canvas[i, :, y : y + s, x : x + s] = fn(canvas[i, :, y : y + s, x : x + s])
            return canvas

        self.update_(edit)

    def check_octaves(self, octaves: Sequence[Octave], model: str) -> None:
        for octave in octaves:
            if self.canvas_size(octave) < self.view_size:
                raise FeatvisError(f"octave canvas size {octave.size} is smaller than the {model} input size {self.view_size}")

    def canvas_size(self, octave: Octave) -> int:
        return octave.size or self.view_size

    def rendered(self) -> torch.Tensor:
        """The canvases ``[G, C, S, S]`` clamped to [0, 1], detached."""
        return self().detach().clamp(0, 1)
