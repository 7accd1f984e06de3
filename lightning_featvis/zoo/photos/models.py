"""The photo zoo: models this project trains itself on 64x64 crops of ten natural colour photos
that ship in pip packages (:mod:`lightning_featvis.photos_data`), normalised with ImageNet's
mean and std like most pretrained models, shipped inside the package so that everything runs
offline.

Each is trained by ``featvis fit --config lightning_featvis/zoo/photos/configs/train_<name>.yaml``
(see the retraining page) and loads its shipped weights unless told otherwise.
"""

from __future__ import annotations

from pathlib import Path

from lightning_featvis.models.torchvision_vit import CustomViT
from lightning_featvis.zoo.cnn import SmallCNN
from lightning_featvis.zoo.shipped import shipped_or

#: the shipped weights, one plain state dict per model
CHECKPOINTS = Path(__file__).parent / "checkpoints"
#: ImageNet's normalisation, as the pretrained models this zoo stands in for use
PHOTOS_MEAN = (0.485, 0.456, 0.406)
PHOTOS_STD = (0.229, 0.224, 0.225)

#: architecture of the photo ViT (64x64 RGB input, 8x8 patches of 8 px, 65 tokens)
PHOTOS_VIT_CONFIG = dict(image_size=64, patch_size=8, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=256,
                         num_classes=10)
PHOTOS_VIT_CHECKPOINT = CHECKPOINTS / "photos_vit.pt"
#: a second photo ViT, the same recipe from ``seed_everything: 1``: an independent judge, load it
#: with ``PhotosViT(checkpoint=str(PHOTOS_VIT_SEED1_CHECKPOINT))``
PHOTOS_VIT_SEED1_CHECKPOINT = CHECKPOINTS / "photos_vit_seed1.pt"
#: architecture of the photo CNN (64x64 RGB input, four conv blocks: 64 -> 4 px)
PHOTOS_CNN_CONFIG = dict(image_size=64, channels=(32, 64, 96, 128), num_classes=10)
PHOTOS_CNN_CHECKPOINT = CHECKPOINTS / "photos_cnn.pt"


class PhotosViT(CustomViT):
    """torchvision ``VisionTransformer`` (64 px, patch 8, 4 blocks, width 64) trained to tell
    which of ten colour photos a 64x64 crop comes from.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    training_data = "photos:train"

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        super().__init__(**PHOTOS_VIT_CONFIG, checkpoint=shipped_or(CHECKPOINTS, "photos_vit", pretrained, checkpoint),
                         mean=PHOTOS_MEAN, std=PHOTOS_STD, model_name="photos_vit")


class PhotosCNN(SmallCNN):
    """Convolutional photo classifier (4 conv blocks of 32/64/96/128 channels with
    BatchNorm/ReLU/max-pool, global average pool, linear head), an architecture-independent
    judge of the photo ViT's images.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    training_data = "photos:train"

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        super().__init__(PHOTOS_CNN_CONFIG, shipped_or(CHECKPOINTS, "photos_cnn", pretrained, checkpoint),
                         PHOTOS_MEAN, PHOTOS_STD, "photos_cnn")
