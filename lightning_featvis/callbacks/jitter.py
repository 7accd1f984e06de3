"""Positional jitter by cropped octaves: a random model-sized window of the canvas each step."""

from __future__ import annotations

import lightning as L
import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.params import ImageParam
from lightning_featvis.seeding import derive_seed, run_seed


class PositionalJitter(L.Callback):
    """Before every step, moves each target's model-sized view to a random place in its canvas
    (top-left uniform over the valid positions), so only that window is seen, updated and
    blurred. It has an effect once an octave's canvas is larger than the model input.

    The positions come from a generator seeded by (run seed, target, step), never from the
    global RNG, so they do not depend on grouping or on the number of devices. The canvas
    itself is never rolled: an optimizer's per-pixel state stays aligned with its pixels.
    """

    def setup(self, trainer, pl_module, stage) -> None:
        if not isinstance(pl_module.param, ImageParam):
            raise FeatvisError(f"PositionalJitter moves views of images; {type(pl_module).__name__} optimises "
                               "no image (remove the callback)")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        seed, step = run_seed(), batch["step"]
        positions = [
            torch.rand(2, generator=torch.Generator().manual_seed(derive_seed(seed, "jitter", t.key, step)))
            if t is not None
            else torch.full((2,), 0.5)
            for t in batch["targets"]
        ]
        pl_module.param.place_views(torch.stack(positions))
