"""Regularisers and outputs as Lightning callbacks: blur, jitter, TensorBoard images, PNG files."""

from lightning_featvis.callbacks.blur import GaussianBlur
from lightning_featvis.callbacks.image_logger import ImageLogger
from lightning_featvis.callbacks.image_writer import ImageWriter
from lightning_featvis.callbacks.jitter import PositionalJitter

__all__ = ["GaussianBlur", "ImageLogger", "ImageWriter", "PositionalJitter"]
