"""Image parameterizations: how the trainable tensor becomes the image the model sees."""

from lightning_featvis.params.base import ImageParam
from lightning_featvis.params.pixel import PhotoImage, PixelImage

__all__ = ["ImageParam", "PhotoImage", "PixelImage"]
