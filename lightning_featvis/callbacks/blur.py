"""Gaussian blur of the image after every optimizer step, with a sigma schedule per octave."""

from __future__ import annotations

import lightning as L
import torch
from torchvision.transforms.v2.functional import gaussian_blur

from lightning_featvis.errors import FeatvisError
from lightning_featvis.params import ImageParam
from lightning_featvis.schedule import linear, locate


class GaussianBlur(L.Callback):
    """Smooths each target's model-sized view after every optimizer step (the seeds' 3x3 blur).

    Only the window the model saw this step is blurred, as in the seeds' cropped octaves.

    Args:
        kernel_size: side of the square Gaussian kernel (odd).
        sigma: ``[start, end]`` per octave, sigma going linearly from start to end within the
            octave; one pair applies to every octave. A sigma of 0 leaves the image unchanged.
    """

    def __init__(self, kernel_size: int = 3, sigma: list[tuple[float, float]] | None = None) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise FeatvisError(f"kernel_size must be a positive odd number, got {kernel_size}")
        self.kernel_size = kernel_size
        self.sigma = [tuple(pair) for pair in (sigma or [(2.4, 0.8)])]

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not isinstance(pl_module.param, ImageParam):
            raise FeatvisError(f"GaussianBlur blurs images; {type(pl_module).__name__} optimises no image "
                               "(remove the callback)")
        octaves = len(pl_module.octaves)
        if len(self.sigma) not in (1, octaves):
            raise FeatvisError(
                f"GaussianBlur has {len(self.sigma)} sigma pairs for {octaves} octave(s): "
                f"give one [start, end] pair for all octaves, or one per octave"
            )

    def sigma_at(self, octaves: list, step: int) -> float:
        """Blur sigma after step ``step`` of a group (0-based)."""
        octave, octave_step = locate(octaves, step)
        start, end = self.sigma[octave if len(self.sigma) > 1 else 0]
        return linear(start, end, octave_step, octaves[octave].steps)

    def blur(self, image: torch.Tensor, sigma: float) -> torch.Tensor:
        """torchvision's Gaussian blur of ``[..., C, H, W]`` with this callback's kernel."""
        return gaussian_blur(image, [self.kernel_size] * 2, [sigma] * 2)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sigma = self.sigma_at(pl_module.octaves, batch["step"])
        if sigma <= 0:
            return
        pl_module.param.update_views_(lambda view: self.blur(view, sigma))
