"""Regularisers and outputs as Lightning callbacks: blur, jitter, TensorBoard images, PNG files,
reconstruction reports."""

from lightning_featvis.callbacks.blur import GaussianBlur
from lightning_featvis.callbacks.image_logger import ImageLogger
from lightning_featvis.callbacks.image_writer import ImageWriter
from lightning_featvis.callbacks.jitter import PositionalJitter
from lightning_featvis.callbacks.reconstruction_report import ReconstructionReport

__all__ = ["GaussianBlur", "ImageLogger", "ImageWriter", "PositionalJitter", "ReconstructionReport"]
