"""Regularisers and outputs as Lightning callbacks: blur, jitter, TensorBoard images, PNG files,
reconstruction reports, augmentation ensembles, total variation, pixel norms."""

from lightning_featvis.callbacks.augment import AugmentationEnsemble
from lightning_featvis.callbacks.blur import GaussianBlur
from lightning_featvis.callbacks.image_logger import ImageLogger
from lightning_featvis.callbacks.image_writer import ImageWriter
from lightning_featvis.callbacks.jitter import PositionalJitter
from lightning_featvis.callbacks.pixel_norm import PixelNorm
from lightning_featvis.callbacks.reconstruction_report import ReconstructionReport
from lightning_featvis.callbacks.total_variation import TotalVariation

__all__ = [
    "AugmentationEnsemble",
    "GaussianBlur",
    "ImageLogger",
    "ImageWriter",
    "PixelNorm",
    "PositionalJitter",
    "ReconstructionReport",
    "TotalVariation",
]
