"""The embedded default model: a small ViT trained by this project on scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

from lightning_featvis.models.torchvision_vit import CustomViT

#: architecture of the embedded digits ViT (32x32 RGB input, 8x8 patches of 4 px)
DIGITS_VIT_CONFIG = dict(
    image_size=32,
    patch_size=4,
    num_layers=4,
    num_heads=4,
    hidden_dim=64,
    mlp_dim=256,
    num_classes=10,
)
#: digits are rendered in [0, 1] and normalised to [-1, 1]
DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)
#: the shipped weights (trained by ``featvis fit --config configs/train_digits.yaml``)
DIGITS_VIT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "digits_vit.pt"
#: a second digits ViT, same recipe with ``seed_everything: 1`` (trained by ``featvis fit --config
#: configs/train_digits_vit_seed1.yaml``): an independent judge, load it with
#: ``DigitsViT(checkpoint=str(DIGITS_VIT_SEED1_CHECKPOINT))``
DIGITS_VIT_SEED1_CHECKPOINT = Path(__file__).parent / "checkpoints" / "digits_vit_seed1.pt"


class DigitsViT(CustomViT):
    """The embedded default model: torchvision ``VisionTransformer`` (32 px, patch 4, 4 blocks,
    width 64) trained on scikit-learn's digits upsampled to 32x32 RGB.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        if checkpoint is None and pretrained:
            checkpoint = str(DIGITS_VIT_CHECKPOINT)
        super().__init__(
            **DIGITS_VIT_CONFIG,
            checkpoint=checkpoint,
            mean=DIGITS_MEAN,
            std=DIGITS_STD,
            model_name="digits_vit",
        )
