"""Melas-Kyriazi's feed-forward ViT ("Do You Even Need Attention?", 2021) as a plain network (its
adapter: :class:`lightning_featvis.models.FeedForwardMixer`): a ViT whose attention is replaced
by an MLP over the token axis, i.e. an MLP-Mixer that keeps the ViT's class token.

Each block is::

    x = x + mlp1(norm1(x))      # channel MLP over D, x is [B, T, D]
    x = x.transpose(-2, -1)     # [B, D, T]
    x = x + mlp2(norm2(x))      # token MLP over all T = 1 + P tokens, class token included
    x = x.transpose(-2, -1)     # back to [B, T, D]

Module and parameter names follow the reference ``vision_transformer_linear.py`` of
``lukemelas/do-you-even-need-attention`` so the released checkpoints load unchanged:
``patch_embed.proj``, ``cls_token``, ``pos_encoding.pos_embed`` ``[1, D, h, w]``,
``pos_encoding.cls_pos_embed`` ``[1, 1, D]``, ``blocks.{i}.norm1`` / ``mlp1.fc1`` / ``mlp1.fc2``
(over D), ``blocks.{i}.norm2`` / ``mlp2.fc1`` / ``mlp2.fc2`` (over T), ``norm``, ``head``.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))`` over the last axis (the key names of timm's ``Mlp``; no dropout)."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed(nn.Module):
    """A ``patch_size``-strided convolution: ``[B, 3, H, W]`` -> ``[B, D, H/p, W/p]``."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class LearnedPositionalEncoding(nn.Module):
    """Adds learned positions to a ``[B, 1+P, D]`` token sequence whose class token is first.

    The patch positions are stored as a ``[1, D, h, w]`` map and the class token's as
    ``[1, 1, D]`` (the reference's parameter shapes); the grid must match the patch grid, since
    the token MLPs are sized for a fixed number of tokens anyway.
    """

    def __init__(self, height: int, width: int, embed_dim: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, height, width))
        self.cls_pos_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = self.pos_embed.flatten(2).transpose(1, 2)  # [1, h*w, D], row-major like the patches
        return tokens + torch.cat([self.cls_pos_embed, patches], dim=1)


class FeedForwardBlock(nn.Module):
    """Channel MLP then token MLP, each pre-norm with a residual.

    ``post_mlp1`` is an identity that exposes the residual stream between the two halves
    (``[B, T, D]``) as an addressable layer; it holds no parameters.
    """

    def __init__(self, dim: int, num_tokens: int, mlp_ratio: float, norm_eps: float) -> None:
        super().__init__()
        self.mlp1 = Mlp(dim, int(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.post_mlp1 = nn.Identity()
        # the token MLP and its LayerNorm act on the T axis, class token included
        self.mlp2 = Mlp(num_tokens, int(num_tokens * mlp_ratio))
        self.norm2 = nn.LayerNorm(num_tokens, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.post_mlp1(x + self.mlp1(self.norm1(x)))
        x = x.transpose(-2, -1)
        x = x + self.mlp2(self.norm2(x))
        return x.transpose(-2, -1)


class FeedForwardViT(nn.Module):
    """The feed-forward ViT: patch embedding, class token, learned positions, ``depth``
    feed-forward blocks, a final LayerNorm and a linear head on the class token.

    Args:
        image_size: input side in pixels (fixed: the token MLPs are sized for its patch count).
        patch_size: patch side in pixels.
        in_chans: input channels.
        num_classes: logits of the head.
        embed_dim: token width ``D``.
        depth: number of blocks.
        mlp_ratio: hidden width of both MLPs relative to their input (``D`` resp. ``T``).
        norm_eps: LayerNorm epsilon (1e-6 in the released models).
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise FeatvisError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        grid = image_size // patch_size
        self.image_size, self.patch_size, self.embed_dim = image_size, patch_size, embed_dim
        self.num_tokens = 1 + grid * grid
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_encoding = LearnedPositionalEncoding(grid, grid, embed_dim)
        self.blocks = nn.ModuleList(
            FeedForwardBlock(embed_dim, self.num_tokens, mlp_ratio, norm_eps) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Linear(embed_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_encoding.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_encoding.cls_pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final-normed class token ``[B, D]`` of ``[B, 3, H, W]`` images."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise FeatvisError(
                f"feed-forward ViT takes {self.image_size}x{self.image_size} images, got {tuple(x.shape[-2:])}"
            )
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B, P, D]
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = self.pos_encoding(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


#: token-MLP layers whose last axis is the T tokens (class token at index 0)
