"""A language model's transformer stack on a vision stem: GPT-2 blocks fed by ViT-B/16 patches.

The seed texts' experiment 14 (docs/experiments.md): the patch-embedding convolution and class token of a trained
torchvision ViT-B/16 produce ``[B, 1 + P, 768]`` tokens (class token first, patches in reading
order: left to right, top to bottom) that go through Hugging Face GPT-2 small blocks, causal
attention mask kept, so token ``t`` only sees tokens ``0..t``.

Causal masking when the blocks are called outside ``GPT2Model`` (transformers 5.x): ``GPT2Model``
builds the mask (``create_causal_mask``) and passes it to each block; a bare ``GPT2Block`` called
without ``attention_mask`` is causal only by accident of the attention backend: the SDPA backend
sets ``is_causal=True`` when no mask is given, the eager backend applies no mask at all (a
bidirectional encoder). :class:`GPT2OnViTStem` therefore always passes an explicit additive
causal mask, which every backend honours. Also, in transformers 5.x a block returns a tensor, not a
tuple (4.x returned ``(hidden_states, ...)``), so the author's ``block(x)[0]`` would now take the
first *image* of the batch; the stack accepts both.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout, ModelAdapter, load_into
from lightning_featvis.models.downloads import require_hub
from lightning_featvis.networks.gpt2_on_vit_stem import GPT2OnViTStem, Pool, Positional


def gpt2_layout(layer: str) -> Layout:
    """``conv_proj`` is a map, ``head`` and the output are logits, everything else is tokens."""
    if layer in ("", "head"):
        return Layout("logits")
    if layer == "conv_proj":
        return Layout("map")
    return Layout("tokens", prefix_tokens=1)


class GPT2ViTStack(ModelAdapter):
    """GPT-2 blocks on a torchvision ViT-B/16 stem (docs/experiments.md, item 14), or a smaller copy.

    Layers: ``conv_proj`` (map), ``blocks.0`` .. ``blocks.{num_blocks-1}`` (tokens, 1 class
    token first; patch ``p`` is token ``p + 1``), their sub-modules, ``ln_f``, ``head`` (logits).

    Args:
        weights: torchvision ``ViT_B_16_Weights`` member name for the stem, e.g.
            ``IMAGENET1K_V1`` (downloaded by torchvision). ``None`` means a fully random
            network: random stem *and* random GPT-2 blocks of the configured size, whatever
            ``gpt2`` says (the offline/test convention every adapter's ``weights`` follows).
        gpt2: where the GPT-2 blocks come from when ``weights`` is set: a Hugging Face model
            id (``gpt2``) or a local directory holding ``config.json`` and the weights, for
            ``GPT2Model.from_pretrained``; ``None`` gives random blocks.
        num_blocks: how many GPT-2 blocks (the first ``num_blocks`` of the model), 1..12.
        positional: ``none`` (default, as the author's scripts), ``vit`` or ``gpt2``;
            see :class:`GPT2OnViTStem`.
        pool: ``mean`` or ``last``: the token(s) the head classifies; see :class:`GPT2OnViTStem`.
        checkpoint: a local state-dict file of the whole stack (loads instead of ``weights``
            and ``gpt2``; the sizes below must match it).
        image_size: input side (the architecture's defaults are ViT-B/16 and GPT-2 small:
            224 px, 16 px patches, 768 wide, 12 heads, MLP 3072).
        patch_size: side of a patch in pixels.
        hidden_dim: token width D.
        num_heads: attention heads per block.
        mlp_dim: hidden width of each block's MLP.
        num_classes: outputs of the head (random unless loaded from ``checkpoint``).
        mean: the input normalisation's per-channel mean (ImageNet's by default).
        std: the input normalisation's per-channel std (ImageNet's by default).
        model_name: short name used in file names and TensorBoard tags.
    """

    logits_layer = "head"

    def __init__(
        self,
        weights: str | None = "IMAGENET1K_V1",
        gpt2: str | None = "gpt2",
        num_blocks: int = 12,
        positional: Positional = "none",
        pool: Pool = "mean",
        checkpoint: str | None = None,
        image_size: int = 224,
        patch_size: int = 16,
        hidden_dim: int = 768,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        num_classes: int = 1000,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        model_name: str = "gpt2_vit_b16",
    ) -> None:
        if not 1 <= num_blocks <= 12:
            raise FeatvisError(f"num_blocks must be 1..12, not {num_blocks}")
        if image_size % patch_size:
            raise FeatvisError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if hidden_dim % num_heads:
            raise FeatvisError(f"hidden_dim {hidden_dim} is not a multiple of num_heads {num_heads}")
        if positional not in ("none", "vit", "gpt2"):
            raise FeatvisError(f"positional must be none, vit or gpt2, not {positional!r}")
        self.weights, self.gpt2, self.checkpoint = weights, gpt2, checkpoint
        self.num_blocks, self.positional, self.pool = num_blocks, positional, pool
        self.config = dict(image_size=image_size, patch_size=patch_size, hidden_dim=hidden_dim,
                           num_heads=num_heads, mlp_dim=mlp_dim, num_classes=num_classes)
        self.mean, self.std = tuple(mean), tuple(std)
        self.model_name = model_name

    @property
    def num_tokens(self) -> int:
        return 1 + (self.config["image_size"] // self.config["patch_size"]) ** 2

    def layout(self, layer: str) -> Layout:
        return gpt2_layout(layer)

    # -- the two halves -------------------------------------------------------------------
    def _random_stem(self) -> tuple[nn.Conv2d, torch.Tensor, torch.Tensor]:
        c = self.config
        conv = nn.Conv2d(3, c["hidden_dim"], kernel_size=c["patch_size"], stride=c["patch_size"])
        # torchvision's VisionTransformer initialisation of the same three tensors
        fan_in = 3 * c["patch_size"] ** 2
        nn.init.trunc_normal_(conv.weight, std=(1.0 / fan_in) ** 0.5)
        nn.init.zeros_(conv.bias)
        class_token = torch.zeros(1, 1, c["hidden_dim"])
        pos = torch.empty(1, self.num_tokens, c["hidden_dim"]).normal_(std=0.02)
        return conv, class_token, pos

    def _pretrained_stem(self) -> tuple[nn.Conv2d, torch.Tensor, torch.Tensor]:
        enum = torchvision.models.ViT_B_16_Weights
        try:
            weights = enum[self.weights]
        except KeyError:
            choices = ", ".join(member.name for member in enum)
            raise FeatvisError(f"unknown ViT-B/16 weights {self.weights!r}; choose one of {choices}") from None
        size = int(weights.meta.get("min_size", (224,))[0])
        c = self.config
        if (size, 16, 768) != (c["image_size"], c["patch_size"], c["hidden_dim"]):
            raise FeatvisError(
                f"ViT-B/16 {self.weights} needs image_size={size}, patch_size=16, hidden_dim=768; "
                f"got {c['image_size']}, {c['patch_size']}, {c['hidden_dim']}"
            )
        try:
            vit = torchvision.models.vit_b_16(weights=weights)
        except Exception as err:  # noqa: BLE001 - network errors come in many types
            raise FeatvisError(
                f"could not download ViT-B/16 weights {self.weights} ({type(err).__name__}: {err}). "
                f"Offline? Download {weights.url} elsewhere, build the stack once and save it, then "
                "pass `checkpoint: /path/to/stack.pt`"
            ) from err
        return vit.conv_proj, vit.class_token.data, vit.encoder.pos_embedding.data

    def _gpt2_config(self):
        from transformers import GPT2Config

        c = self.config
        return GPT2Config(
            n_embd=c["hidden_dim"], n_head=c["num_heads"], n_layer=self.num_blocks, n_inner=c["mlp_dim"],
            n_positions=max(1024, self.num_tokens), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )

    def _gpt2(self):
        from transformers import GPT2Model

        if self.gpt2 is None or self.weights is None or self.checkpoint is not None:
            return GPT2Model(self._gpt2_config())
        advice = (f"On a connected machine run `hf download {self.gpt2} --local-dir /path/to/gpt2` and pass the "
                  "directory: `gpt2: /path/to/gpt2`")
        require_hub(self.gpt2, ("config.json",), f"GPT-2 {self.gpt2!r}", advice)
        try:
            model = GPT2Model.from_pretrained(self.gpt2)
        except Exception as err:  # noqa: BLE001 - hub, file and format errors alike
            raise FeatvisError(
                f"could not load GPT-2 {self.gpt2!r} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
                f"Offline? {advice}"
            ) from err
        c = self.config
        cfg = model.config
        if (cfg.n_embd, cfg.n_head) != (c["hidden_dim"], c["num_heads"]) or len(model.h) < self.num_blocks:
            raise FeatvisError(
                f"GPT-2 {self.gpt2!r} is {cfg.n_embd} wide with {cfg.n_head} heads and {len(model.h)} blocks; "
                f"the stack needs {c['hidden_dim']}, {c['num_heads']} and >= {self.num_blocks}"
            )
        return model

    def build(self) -> nn.Module:
        if self.weights is None or self.checkpoint is not None:
            conv, class_token, pos = self._random_stem()
        else:
            conv, class_token, pos = self._pretrained_stem()
        gpt2 = self._gpt2()
        net = GPT2OnViTStem(
            conv, class_token, list(gpt2.h[: self.num_blocks]), gpt2.ln_f, self.config["num_classes"],
            positional=self.positional, pos_embedding=pos, wpe=gpt2.wpe, pool=self.pool,
        )
        if self.checkpoint is not None:
            load_into(net, self.checkpoint)
        return net
