"""A digits stand-in for the feed-forward ViT: the mixer counterpart of :class:`DigitsViT`."""

from __future__ import annotations

from pathlib import Path

from lightning_featvis.models.digits import DIGITS_MEAN, DIGITS_STD
from lightning_featvis.models.feedforward import FeedForwardMixer

#: architecture of the embedded digits mixer (32x32 RGB input, 8x8 patches of 4 px, 65 tokens)
DIGITS_MIXER_CONFIG = dict(
    image_size=32,
    patch_size=4,
    embed_dim=64,
    depth=4,
    mlp_ratio=4.0,
    num_classes=10,
)
#: the shipped weights (trained by ``featvis fit --config configs/train_digits_mixer.yaml``)
DIGITS_MIXER_CHECKPOINT = Path(__file__).parent / "checkpoints" / "digits_mixer.pt"


class DigitsMixer(FeedForwardMixer):
    """Embedded feed-forward ViT (Melas-Kyriazi's mixer: 32 px, patch 4, 4 blocks, width 64,
    token MLPs over the 65 tokens incl. the class token) trained on scikit-learn's digits
    upsampled to 32x32 RGB, normalised to [-1, 1] like :class:`DigitsViT`.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        if checkpoint is None and pretrained:
            checkpoint = str(DIGITS_MIXER_CHECKPOINT)
        super().__init__(
            size=None,
            **DIGITS_MIXER_CONFIG,
            checkpoint=checkpoint,
            mean=DIGITS_MEAN,
            std=DIGITS_STD,
            model_name="digits_mixer",
        )
