"""Networks this project defines (plain ``nn.Module``s, no featvis logic): the feed-forward ViT
and GPT-2 blocks on a ViT stem. Their adapters are in :mod:`lightning_featvis.models`."""

from lightning_featvis.networks.feedforward import FeedForwardViT
from lightning_featvis.networks.gpt2_on_vit_stem import GPT2OnViTStem, causal_mask

__all__ = ["FeedForwardViT", "GPT2OnViTStem", "causal_mask"]
