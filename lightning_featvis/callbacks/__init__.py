"""Regularisers and outputs as Lightning callbacks: blur, jitter, TensorBoard images, PNG files,
reconstruction and text reports, attribution maps, augmentation ensembles, total variation, pixel
norms, a Gaussian data prior; and torch.compile of the frozen network. Each takes one of the roles in :mod:`~lightning_featvis.callbacks.roles`
(a penalty, a view augmentation, a group-result consumer) or uses plain Lightning hooks
(blur, jitter)."""

from lightning_featvis.callbacks.attribution import AttributionMap
from lightning_featvis.callbacks.augment import AugmentationEnsemble
from lightning_featvis.callbacks.compile import CompileNetwork
from lightning_featvis.callbacks.blur import GaussianBlur
from lightning_featvis.callbacks.data_prior import GaussianPrior
from lightning_featvis.callbacks.image_logger import ImageLogger
from lightning_featvis.callbacks.image_writer import ImageWriter
from lightning_featvis.callbacks.jitter import PositionalJitter
from lightning_featvis.callbacks.pixel_norm import PixelNorm
from lightning_featvis.callbacks.reconstruction_report import ReconstructionReport
from lightning_featvis.callbacks.roles import GroupResultHook, Penalty, ViewAugmentation
from lightning_featvis.callbacks.text_report import TextReport
from lightning_featvis.callbacks.total_variation import TotalVariation

__all__ = [
    "AttributionMap",
    "AugmentationEnsemble",
    "CompileNetwork",
    "GaussianBlur",
    "GaussianPrior",
    "GroupResultHook",
    "ImageLogger",
    "ImageWriter",
    "Penalty",
    "PixelNorm",
    "PositionalJitter",
    "ReconstructionReport",
    "TextReport",
    "TotalVariation",
    "ViewAugmentation",
]
