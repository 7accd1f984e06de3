"""Model adapters: one per family, each a frozen network plus its input spec and layouts."""

from lightning_featvis.models.adapter import Layout, ModelAdapter
from lightning_featvis.models.digits import DigitsViT
from lightning_featvis.models.digits_cnn import DigitsCNN
from lightning_featvis.models.digits_gpt2 import DigitsGPT2
from lightning_featvis.models.digits_mixer import DigitsMixer
from lightning_featvis.models.feedforward import FeedForwardMixer, FeedForwardViT
from lightning_featvis.models.gpt2_stack import GPT2OnViTStem, GPT2ViTStack
from lightning_featvis.models.text import MiniLM, TextModel, TinyGPT2
from lightning_featvis.models.timm_models import TimmModel
from lightning_featvis.models.torchvision_vit import CustomViT, TorchvisionViT

__all__ = [
    "CustomViT",
    "DigitsCNN",
    "DigitsGPT2",
    "DigitsMixer",
    "DigitsViT",
    "FeedForwardMixer",
    "FeedForwardViT",
    "GPT2OnViTStem",
    "GPT2ViTStack",
    "Layout",
    "MiniLM",
    "ModelAdapter",
    "TextModel",
    "TimmModel",
    "TinyGPT2",
    "TorchvisionViT",
]
