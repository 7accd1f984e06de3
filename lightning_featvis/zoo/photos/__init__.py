"""The photo zoo: networks, shipped checkpoints, training data and training configs of the
models this project trains on crops of ten natural colour photos bundled in pip packages."""

from lightning_featvis.zoo.photos.models import PhotosCNN, PhotosViT

__all__ = ["PhotosCNN", "PhotosViT"]
