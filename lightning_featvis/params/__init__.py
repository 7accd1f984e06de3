"""Image parameterizations: how the trainable tensor becomes the image the model sees."""

from lightning_featvis.params.base import ImageParam
from lightning_featvis.params.pixel import PixelImage

__all__ = ["ImageParam", "PixelImage"]
