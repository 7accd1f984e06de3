"""Offline stand-in for EXPERIMENTS.md item 14: a small GPT-2-style causal stack trained on digits."""

from __future__ import annotations

from pathlib import Path

from lightning_featvis.models.gpt2_stack import GPT2ViTStack, Positional

#: architecture of the digits GPT-2 stack (32x32 RGB input, 8x8 patches of 4 px, 65 tokens)
DIGITS_GPT2_CONFIG = dict(image_size=32, patch_size=4, hidden_dim=64, num_heads=4, mlp_dim=256, num_classes=10)
DIGITS_GPT2_BLOCKS = 4
#: the shipped weights (trained by ``featvis fit --config configs/train_digits_gpt2.yaml``)
DIGITS_GPT2_CHECKPOINT = Path(__file__).parent / "checkpoints" / "digits_gpt2.pt"


class DigitsGPT2(GPT2ViTStack):
    """A ViT-style patch stem + class token feeding 4 causal GPT-2 blocks (width 64, 4 heads),
    trained on scikit-learn's digits upsampled to 32x32 RGB; the head classifies the mean token.

    Args:
        pretrained: load the weights shipped inside the package; ``False`` gives random weights.
        checkpoint: load these weights instead (e.g. a model you retrained).
        positional: must match the weights; the shipped ones use ``none`` like the author's
            GPT-2 scripts: token order is known only through the causal mask.
    """

    def __init__(self, pretrained: bool = True, checkpoint: str | None = None, positional: Positional = "none") -> None:
        if checkpoint is None and pretrained:
            checkpoint = str(DIGITS_GPT2_CHECKPOINT)
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
