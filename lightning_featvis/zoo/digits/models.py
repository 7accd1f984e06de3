"""The digits zoo: models this project trains itself on scikit-learn's digits (upsampled to
32x32 RGB, normalised to [-1, 1]), shipped inside the package so that everything runs offline.

Each is trained by ``featvis fit --config lightning_featvis/zoo/digits/configs/train_<name>.yaml``
(see the retraining page) and loads its shipped weights unless told otherwise.
"""

from __future__ import annotations

from pathlib import Path

from lightning_featvis.models.feedforward import FeedForwardMixer
from lightning_featvis.models.gpt2_stack import GPT2ViTStack
from lightning_featvis.models.torchvision_vit import CustomViT
from lightning_featvis.networks.gpt2_on_vit_stem import Positional
from lightning_featvis.zoo.cnn import SmallCNN
from lightning_featvis.zoo.shipped import shipped_or

#: the shipped weights, one plain state dict per model
CHECKPOINTS = Path(__file__).parent / "checkpoints"
#: digits are rendered in [0, 1] and normalised to [-1, 1]
DIGITS_MEAN = (0.5, 0.5, 0.5)
DIGITS_STD = (0.5, 0.5, 0.5)


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
DIGITS_VIT_CHECKPOINT = CHECKPOINTS / "digits_vit.pt"
#: a second digits ViT, same recipe with ``seed_everything: 1``: an independent judge, load it
#: with ``DigitsViT(checkpoint=str(DIGITS_VIT_SEED1_CHECKPOINT))``
DIGITS_VIT_SEED1_CHECKPOINT = CHECKPOINTS / "digits_vit_seed1.pt"
#: architecture of the embedded digits mixer (32x32 RGB input, 8x8 patches of 4 px, 65 tokens)
DIGITS_MIXER_CONFIG = dict(
    image_size=32,
    patch_size=4,
    embed_dim=64,
    depth=4,
    mlp_ratio=4.0,
    num_classes=10,
)
DIGITS_MIXER_CHECKPOINT = CHECKPOINTS / "digits_mixer.pt"
#: architecture of the digits GPT-2 stack (32x32 RGB input, 8x8 patches of 4 px, 65 tokens)
DIGITS_GPT2_CONFIG = dict(image_size=32, patch_size=4, hidden_dim=64, num_heads=4, mlp_dim=256, num_classes=10)
DIGITS_GPT2_BLOCKS = 4
DIGITS_GPT2_CHECKPOINT = CHECKPOINTS / "digits_gpt2.pt"
#: architecture of the embedded digits CNN (32x32 RGB input, three conv blocks, ~94k parameters)
DIGITS_CNN_CONFIG = dict(
    image_size=32,
    channels=(32, 64, 128),
    num_classes=10,
)
DIGITS_CNN_CHECKPOINT = CHECKPOINTS / "digits_cnn.pt"


class DigitsViT(CustomViT):
    """The embedded default model: torchvision ``VisionTransformer`` (32 px, patch 4, 4 blocks,
    width 64) trained on scikit-learn's digits upsampled to 32x32 RGB.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    training_data = "digits:train"

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        checkpoint = shipped_or(CHECKPOINTS, "digits_vit", pretrained, checkpoint)
        super().__init__(
            **DIGITS_VIT_CONFIG,
            checkpoint=checkpoint,
            mean=DIGITS_MEAN,
            std=DIGITS_STD,
            model_name="digits_vit",
        )


class DigitsMixer(FeedForwardMixer):
    """Embedded feed-forward ViT (Melas-Kyriazi's mixer: 32 px, patch 4, 4 blocks, width 64,
    token MLPs over the 65 tokens incl. the class token) trained on scikit-learn's digits
    upsampled to 32x32 RGB, normalised to [-1, 1] like :class:`DigitsViT`.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    training_data = "digits:train"

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        checkpoint = shipped_or(CHECKPOINTS, "digits_mixer", pretrained, checkpoint)
        super().__init__(
            size=None,
            **DIGITS_MIXER_CONFIG,
            checkpoint=checkpoint,
            mean=DIGITS_MEAN,
            std=DIGITS_STD,
            model_name="digits_mixer",
        )


class DigitsGPT2(GPT2ViTStack):
    """A ViT-style patch stem + class token feeding 4 causal GPT-2 blocks (width 64, 4 heads),
    trained on scikit-learn's digits upsampled to 32x32 RGB; the head classifies the mean token.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
        positional: must match the weights; the shipped ones use ``none`` like the author's
            GPT-2 scripts: token order is known only through the causal mask.
    """

    training_data = "digits:train"

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None, positional: Positional = "none") -> None:
        checkpoint = shipped_or(CHECKPOINTS, "digits_gpt2", pretrained, checkpoint)
        super().__init__(
            weights=None,
            gpt2=None,
            num_blocks=DIGITS_GPT2_BLOCKS,
            positional=positional,
            pool="mean",
            checkpoint=checkpoint,
            **DIGITS_GPT2_CONFIG,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            model_name="digits_gpt2",
        )


class DigitsCNN(SmallCNN):
    """Embedded convolutional digits classifier (3 conv blocks of 32/64/128 channels with
    BatchNorm/ReLU/max-pool, global average pool, linear head) trained on scikit-learn's digits
    upsampled to 32x32 RGB, normalised to [-1, 1] like :class:`DigitsViT`.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
    """

    training_data = "digits:train"

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None) -> None:
        super().__init__(DIGITS_CNN_CONFIG, shipped_or(CHECKPOINTS, "digits_cnn", pretrained, checkpoint),
                         DIGITS_MEAN, DIGITS_STD, "digits_cnn")
