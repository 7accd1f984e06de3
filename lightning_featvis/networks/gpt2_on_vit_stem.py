"""GPT-2 blocks on a ViT patch stem as a network (its adapter: ``lightning_featvis.models.GPT2ViTStack``)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError

Positional = Literal["none", "vit", "gpt2"]
Pool = Literal["mean", "last"]

def causal_mask(tokens: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive ``[1, 1, T, T]`` mask: 0 where key ``<=`` query, the dtype's minimum above."""
    future = torch.ones(tokens, tokens, dtype=torch.bool, device=device).triu(1)
    mask = torch.zeros(tokens, tokens, dtype=dtype, device=device)
    return mask.masked_fill(future, torch.finfo(dtype).min).view(1, 1, tokens, tokens)


class GPT2OnViTStem(nn.Module):
    """ViT patch stem + class token, then GPT-2 blocks with a causal mask, then a classifier.

    Module names (the addressable layers): ``conv_proj`` (patch embedding ``[B, D, h, w]``),
    ``blocks.i`` (GPT-2 block ``i``, 0-based, ``[B, 1 + P, D]``, and its ``ln_1, attn, ln_2,
    mlp.c_fc, ...``), ``ln_f`` (GPT-2's final LayerNorm), ``head`` (class logits).

    Args:
        conv_proj: the patch embedding, ``Conv2d(3, D, patch, stride=patch)``.
        class_token: ``[1, 1, D]`` prepended as token 0.
        blocks: GPT-2 blocks (``GPT2Block``), width ``D``.
        ln_f: final LayerNorm applied before pooling.
        num_classes: size of the linear ``head``.
        positional: ``"none"`` (the author's scripts: the causal mask is the only order
            information), ``"vit"`` (add ViT's learned ``pos_embedding`` ``[1, 1 + P, D]``, as in
            the ViT the stem comes from), ``"gpt2"`` (add GPT-2's ``wpe`` rows ``0..P``).
        pos_embedding: ``[1, 1 + P, D]`` for ``positional="vit"``.
        wpe: GPT-2's position ``nn.Embedding`` for ``positional="gpt2"``.
        pool: which tokens the head classifies. ``"mean"`` (default): the mean over all tokens
            after ``ln_f``. Under the causal mask the class token at position 0 sees only itself
            (it is a constant), so it cannot classify; the last token sees every patch, but it
            is the bottom-right patch (background in most images) and must gather everything
            through attention alone, which trains slower on small data. ``"last"``: the last
            token, as ``GPT2ForSequenceClassification`` does.
    """

    def __init__(
        self,
        conv_proj: nn.Conv2d,
        class_token: torch.Tensor,
        blocks: list[nn.Module],
        ln_f: nn.LayerNorm,
        num_classes: int,
        positional: Positional = "none",
        pos_embedding: torch.Tensor | None = None,
        wpe: nn.Embedding | None = None,
        pool: Pool = "mean",
    ) -> None:
        super().__init__()
        if positional not in ("none", "vit", "gpt2"):
            raise FeatvisError(f"positional must be none, vit or gpt2, not {positional!r}")
        if pool not in ("mean", "last"):
            raise FeatvisError(f"pool must be mean or last, not {pool!r}")
        self.positional, self.pool = positional, pool
        self.conv_proj = conv_proj
        self.class_token = nn.Parameter(class_token.detach().clone())
        if positional == "vit":
            if pos_embedding is None:
                raise FeatvisError("positional='vit' needs the ViT's pos_embedding")
            self.pos_embedding = nn.Parameter(pos_embedding.detach().clone())
        if positional == "gpt2":
            if wpe is None:
                raise FeatvisError("positional='gpt2' needs GPT-2's wpe embedding")
            self.wpe = wpe
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = ln_f
        width = class_token.shape[-1]
        self.head = nn.Linear(width, num_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The stem: ``[B, 3, H, W]`` normalised images to ``[B, 1 + P, D]`` tokens."""
        patches = self.conv_proj(x).flatten(2).transpose(1, 2)  # [B, P, D], reading order
        x = torch.cat([self.class_token.expand(len(patches), -1, -1), patches], dim=1)
        if self.positional == "vit":
            if self.pos_embedding.shape[1] != x.shape[1]:
                raise FeatvisError(
                    f"ViT pos_embedding has {self.pos_embedding.shape[1]} tokens, the image gives {x.shape[1]}"
                )
            x = x + self.pos_embedding
        elif self.positional == "gpt2":
            x = x + self.wpe(torch.arange(x.shape[1], device=x.device)).unsqueeze(0)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + P, D]`` output of the last block (before ``ln_f``)."""
        x = self.tokens(x)
        mask = causal_mask(x.shape[1], x.dtype, x.device)
        for block in self.blocks:
            out = block(x, attention_mask=mask)
            x = out[0] if isinstance(out, tuple) else out  # transformers 4.x returned tuples
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_f(self.features(x))
        pooled = x.mean(dim=1) if self.pool == "mean" else x[:, -1]
        return self.head(pooled)
