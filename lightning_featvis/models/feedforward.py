"""The adapter of Melas-Kyriazi's feed-forward ViT ("Do You Even Need Attention?", 2021), whose
network, with its block structure and module names, is
:class:`lightning_featvis.networks.FeedForwardViT`."""

from __future__ import annotations

import argparse
import re
from typing import Literal

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout, ModelAdapter, load_into

#: the released models: FF-tiny (61.4% ImageNet top-1) and FF-base (74.9%), both 224 px, patch 16
FF_SIZES: dict[str, dict] = {
    "tiny": dict(image_size=224, patch_size=16, embed_dim=192, depth=12, mlp_ratio=4.0, num_classes=1000),
    "base": dict(image_size=224, patch_size=16, embed_dim=768, depth=12, mlp_ratio=4.0, num_classes=1000),
}
#: where the released weights are published (download on a machine with network access)
FF_CHECKPOINT_URLS = {
    "tiny": "https://github.com/lukemelas/do-you-even-need-attention/releases/download/v0.0.1/linear-tiny-checkpoint.pth",
    "base": "https://github.com/lukemelas/do-you-even-need-attention/releases/download/v0.0.1/linear-base-checkpoint.pth",
}


from lightning_featvis.networks.feedforward import FeedForwardViT

_TOKEN_AXIS = re.compile(r"blocks\.\d+\.(norm2|mlp2|mlp2\.fc2)")
#: token-MLP hidden layers: their last axis is T*mlp_ratio hidden units, each a mix of all tokens
_TOKEN_HIDDEN = re.compile(r"blocks\.\d+\.mlp2\.(fc1|act)")
#: everything else in the blocks is a [B, T, D]-style token sequence, class token first
_TOKENS = re.compile(r"(pos_encoding|norm|blocks\.\d+(\.(norm1|mlp1|mlp1\.fc1|mlp1\.act|mlp1\.fc2|post_mlp1))?)")


def feedforward_layout(layer: str) -> Layout:
    """Layouts of a :class:`FeedForwardViT`'s modules, by name (never by tensor rank).

    - ``patch_embed`` / ``patch_embed.proj``: ``map`` ``[B, D, h, w]``.
    - ``pos_encoding``, ``blocks.{i}`` (block output), ``blocks.{i}.norm1`` / ``mlp1*`` (channel
      MLP) / ``post_mlp1`` and ``norm``: ``tokens`` ``[B, 1+P, D]``, 1 class token.
    - ``blocks.{i}.norm2`` / ``mlp2`` / ``mlp2.fc2`` (token MLP): ``tokens_transposed``
      ``[B, D, 1+P]``, 1 class token: the class token is index 0 of the T axis here too, so
      ``neuron=d patch=p`` is element ``[:, d, 1+p]``.
    - ``blocks.{i}.mlp2.fc1`` / ``mlp2.act``: ``tokens_transposed`` ``[B, D, T*mlp_ratio]``
      without a class token: ``patch=j`` is the token MLP's hidden unit j, which mixes all tokens.
    - ``head`` and the output: ``logits``.
    """
    if layer in ("", "head"):
        return Layout("logits")
    if layer in ("patch_embed", "patch_embed.proj"):
        return Layout("map")
    if _TOKEN_AXIS.fullmatch(layer):
        return Layout("tokens_transposed", prefix_tokens=1)
    if _TOKEN_HIDDEN.fullmatch(layer):
        return Layout("tokens_transposed", prefix_tokens=0)
    if _TOKENS.fullmatch(layer):
        return Layout("tokens", prefix_tokens=1)
    raise FeatvisError(f"no known layout for layer {layer!r} of the feed-forward ViT")


def _load_reference_checkpoint(net: nn.Module, path: str) -> nn.Module:
    """``load_into``, also accepting the released DeiT-style files: ``{"model": state dict,
    "args": argparse.Namespace, ...}`` (the Namespace is allow-listed for the safe unpickler)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return load_into(net, path)


class FeedForwardMixer(ModelAdapter):
    """Melas-Kyriazi's feed-forward ViT: a released size or any custom one.

    Released weights (ImageNet-1k, 224 px, ImageNet mean/std) are not downloaded by this
    package; fetch them on a machine with network access and pass the local file as
    ``checkpoint`` (the file as released, a DeiT-style ``{"model": ...}`` dict, loads directly):

    - FF-tiny (61.4% top-1): ``linear-tiny-checkpoint.pth`` from
      https://github.com/lukemelas/do-you-even-need-attention/releases/download/v0.0.1/linear-tiny-checkpoint.pth
    - FF-base (74.9% top-1): ``linear-base-checkpoint.pth`` from
      https://github.com/lukemelas/do-you-even-need-attention/releases/download/v0.0.1/linear-base-checkpoint.pth

    Without a checkpoint the network has random weights.

    Args:
        size: ``tiny`` (D 192) or ``base`` (D 768), both patch 16, depth 12, mlp_ratio 4 at
            224 px with 1000 classes; overrides the explicit architecture arguments below.
            ``None`` uses them.
        image_size: input side, when ``size`` is ``None`` (as all of the architecture
            arguments; defaults: FF-base).
        patch_size: side of a patch in pixels.
        embed_dim: token width D.
        depth: blocks.
        mlp_ratio: hidden width of the MLPs, in units of ``embed_dim``.
        num_classes: outputs of the head.
        norm_eps: the layer norms' epsilon.
        checkpoint: a local weights file (released checkpoint, bare state dict or a Lightning
            checkpoint of ``ImageClassifier``).
        mean: per-channel input mean of the weights (ImageNet's for the released ones).
        std: per-channel input std of the weights (ImageNet's for the released ones).
        model_name: name in TensorBoard tags and file names (default ``ff_tiny``, ``ff_base``
            or ``feedforward_vit``).
    """

    logits_layer = "head"

    def __init__(
        self,
        size: Literal["tiny", "base"] | None = None,
        image_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        norm_eps: float = 1e-6,
        checkpoint: str | None = None,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        model_name: str | None = None,
    ) -> None:
        if size is not None and size not in FF_SIZES:
            raise FeatvisError(f"unknown feed-forward ViT size {size!r}; choose one of {', '.join(FF_SIZES)}")
        config = dict(
            image_size=image_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            mlp_ratio=mlp_ratio,
            num_classes=num_classes,
        )
        if size is not None:
            config.update(FF_SIZES[size])
        if config["image_size"] % config["patch_size"]:
            raise FeatvisError(
                f"image_size {config['image_size']} is not a multiple of patch_size {config['patch_size']}"
            )
        self.size = size
        self.config = dict(config, norm_eps=norm_eps)
        self.checkpoint = checkpoint
        self.mean, self.std = tuple(mean), tuple(std)
        self.model_name = model_name or (f"ff_{size}" if size else "feedforward_vit")

    def build(self) -> nn.Module:
        net = FeedForwardViT(**self.config)
        return _load_reference_checkpoint(net, self.checkpoint) if self.checkpoint else net

    def layout(self, layer: str) -> Layout:
        return feedforward_layout(layer)
