"""Model adapters: one per family, each a frozen network plus its input spec and layouts. The
networks this project defines itself are in :mod:`lightning_featvis.networks`; the models it
trains and ships, in :mod:`lightning_featvis.zoo`."""

from lightning_featvis.models.adapter import Layout, ModelAdapter
from lightning_featvis.models.any_module import AnyModule, adapter_for
from lightning_featvis.models.feedforward import FeedForwardMixer
from lightning_featvis.models.gpt2_stack import GPT2ViTStack
from lightning_featvis.models.huggingface_vision import HuggingFaceVision
from lightning_featvis.models.text import MiniLM, TextModel, TinyGPT2
from lightning_featvis.models.timm_models import TimmModel
from lightning_featvis.models.torchvision_vit import CustomViT, TorchvisionViT

__all__ = [
    "AnyModule",
    "CustomViT",
    "FeedForwardMixer",
    "GPT2ViTStack",
    "HuggingFaceVision",
    "Layout",
    "MiniLM",
    "ModelAdapter",
    "TextModel",
    "TimmModel",
    "TinyGPT2",
    "TorchvisionViT",
    "adapter_for",
]
