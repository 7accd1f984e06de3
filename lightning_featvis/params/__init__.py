"""Parameterizations: how the trainable tensor becomes the input the model sees (an image, or for
text models the input embedding sequence), and the input's geometry."""

from lightning_featvis.params.base import ImageParam, InputParam
from lightning_featvis.params.data_image import DataImage
from lightning_featvis.params.decorrelated import DecorrelatedImage
from lightning_featvis.params.embeddings import EmbeddingSequence
from lightning_featvis.params.fourier import FourierImage
from lightning_featvis.params.grayscale import GrayscaleImage
from lightning_featvis.params.maco import MacoImage
from lightning_featvis.params.pixel import PhotoImage, PixelImage
from lightning_featvis.params.shared import SharedImage

__all__ = ["DataImage", "DecorrelatedImage", "EmbeddingSequence", "FourierImage", "GrayscaleImage", "ImageParam", "InputParam", "MacoImage", "PhotoImage", "PixelImage", "SharedImage"]
