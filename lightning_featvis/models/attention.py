"""Attention heads as addressable layers: per-head queries, keys, values, head outputs and
attention patterns of the attention modules of torchvision, timm and Hugging Face ViTs.

These tensors live inside an attention module's forward (torchvision's
``nn.MultiheadAttention`` computes them in ``F.multi_head_attention_forward``), so no module
outputs them. :func:`attach_head_taps` gives every recognised attention module five
parameter-free child modules, :class:`HeadTap`, named

- ``<attention>.q``, ``<attention>.k``, ``<attention>.v``: the queries, keys and values of
  every head, ``[B, T, H, d]`` (``H`` heads of width ``d``; layout kind ``heads``);
- ``<attention>.pattern``: the attention pattern ``softmax(q k^T / sqrt(d))``, ``[B, H, T, T]``
  (query tokens on axis 2, key tokens on axis 3; each row sums to 1; layout kind ``pattern``);
- ``<attention>.heads``: each head's output ``pattern @ v`` before the output projection,
  ``[B, T, H, d]`` (layout kind ``heads``).

A forward hook on the attention module recomputes them from the module's own input and
weights (the input projection, the q/k norms of timm, the masks given to the call) and passes
each through its tap, so that forward hooks on the taps (a
:class:`~lightning_featvis.probe.Probe`) see them and ``named_modules()`` lists them. The
network's output is unchanged, and nothing is computed while no hook listens to a tap.
Gradients flow: the recomputation starts from the attention module's input.

The attention modules recognised are the :class:`HeadSource` s in :data:`HEAD_SOURCES`
(``nn.MultiheadAttention`` without ``bias_k``/``add_zero_attn``, timm's ``Attention``, Hugging
Face's ViT-family and CLIP/SigLIP attention); :func:`register_head_source` adds one.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from lightning_featvis.models.adapter import Layout

#: the taps of an attention module, in the order they are computed, and their layout kinds
TAP_KINDS = {"q": "heads", "k": "heads", "v": "heads", "pattern": "pattern", "heads": "heads"}


@dataclass(frozen=True)
class Projection:
    """What an attention module attends with, recomputed from its input.

    Attributes:
        q: queries ``[B, H, T, d]``.
        k: keys ``[B, H, S, d]``.
        v: values ``[B, H, S, d]``.
        scale: the factor on ``q k^T`` before the softmax (``1 / sqrt(d)`` in all of these).
        mask: an additive mask broadcast to ``[B, H, T, S]`` (``-inf`` where attention is not
            allowed), or ``None``.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    scale: float
    mask: torch.Tensor | None = None


class HeadSource(ABC):
    """How one kind of attention module computes its per-head queries, keys and values."""

    @abstractmethod
    def matches(self, module: nn.Module) -> bool:
        """Whether ``module`` is an attention module of this kind (that this source can read)."""

    @abstractmethod
    def num_heads(self, module: nn.Module) -> int:
        """The head count ``H`` of ``module``."""

    @abstractmethod
    def project(self, module: nn.Module, args: tuple, kwargs: dict) -> Projection:
        """Recompute ``module``'s queries, keys, values and mask from the inputs of one call."""


def _argument(args: tuple, kwargs: dict, index: int, name: str, default: object = None) -> object:
    """The argument a module was called with, given by position or by name."""
    return args[index] if len(args) > index else kwargs.get(name, default)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, T, H*d]`` -> ``[B, H, T, d]``."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _additive(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A boolean mask (True: not allowed, as ``nn.MultiheadAttention`` reads it) as ``-inf``;
    a float mask as it is."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))


class MultiheadAttentionSource(HeadSource):
    """``torch.nn.MultiheadAttention`` (torchvision's ViT blocks), packed ``in_proj_weight`` or
    separate ``q/k/v_proj_weight``, batch first or not; its ``attn_mask`` and
    ``key_padding_mask`` are applied. Modules with ``bias_k``/``bias_v`` or ``add_zero_attn``
    (extra key tokens) are not read."""

    def matches(self, module: nn.Module) -> bool:
        return isinstance(module, nn.MultiheadAttention) and module.bias_k is None and not module.add_zero_attn

    def num_heads(self, module: nn.Module) -> int:
        return module.num_heads

    def project(self, module: nn.Module, args: tuple, kwargs: dict) -> Projection:
        inputs = [_argument(args, kwargs, i, name) for i, name in enumerate(("query", "key", "value"))]
        if inputs[0].dim() == 2:  # unbatched [T, E]
            inputs = [x.unsqueeze(0) for x in inputs]
        elif not module.batch_first:  # [T, B, E]
            inputs = [x.transpose(0, 1) for x in inputs]
        if module.in_proj_weight is not None:  # one packed [3E, E] weight: q, k, v stacked
            weights = module.in_proj_weight.chunk(3)
        else:  # kdim/vdim differ from embed_dim: three weights
            weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
        biases = module.in_proj_bias.chunk(3) if module.in_proj_bias is not None else (None,) * 3
        q, k, v = (_split_heads(F.linear(x, w, b), module.num_heads) for x, w, b in zip(inputs, weights, biases))
        batch, heads, queries, _ = q.shape
        keys = k.shape[2]
        mask = _additive(_argument(args, kwargs, 5, "attn_mask"), q.dtype)
        if mask is not None:  # [T, S] or [B*H, T, S]
            mask = mask.view(1, 1, queries, keys) if mask.dim() == 2 else mask.view(batch, heads, queries, keys)
        padding = _additive(_argument(args, kwargs, 3, "key_padding_mask"), q.dtype)
        if padding is not None:  # [B, S]
            padding = padding.view(batch, 1, 1, keys)
            mask = padding if mask is None else mask + padding
        return Projection(q, k, v, module.head_dim ** -0.5, mask)


def _timm_attention() -> type | None:
    # a timm model was built only if timm is imported: do not import it for other models
    if "timm" not in sys.modules:
        return None
    from timm.layers import Attention

    return Attention


class TimmAttentionSource(HeadSource):
    """timm's ``Attention`` (its ViTs, DeiTs, ...): one ``qkv`` Linear, then ``q_norm`` and
    ``k_norm`` (identities unless ``qk_norm``), ``scale`` and ``attn_mask``/``is_causal``."""

    def matches(self, module: nn.Module) -> bool:
        attention = _timm_attention()
        return attention is not None and isinstance(module, attention)

    def num_heads(self, module: nn.Module) -> int:
        return module.num_heads

    def project(self, module: nn.Module, args: tuple, kwargs: dict) -> Projection:
        from timm.layers.attention import resolve_self_attn_mask

        x = _argument(args, kwargs, 0, "x")
        batch, tokens, _ = x.shape
        qkv = F.linear(x, module.qkv.weight, module.qkv.bias)
        q, k, v = qkv.reshape(batch, tokens, 3, module.num_heads, module.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = module.q_norm(q), module.k_norm(k)
        # timm's own reading of its mask arguments (a bool mask is True where attention is allowed)
        mask = resolve_self_attn_mask(tokens, q, _argument(args, kwargs, 1, "attn_mask"),
                                      bool(_argument(args, kwargs, 2, "is_causal", False)))
        return Projection(q, k, v, module.scale, _additive(mask, q.dtype))


def _hf_attentions(names: tuple[tuple[str, str], ...]) -> tuple[type, ...]:
    # a model of a type was built only if its modeling module is imported: import nothing here
    found = []
    for model_type, name in names:
        module = sys.modules.get(f"transformers.models.{model_type}.modeling_{model_type}")
        if module is not None and name in module.__dict__:
            found.append(module.__dict__[name])
    return tuple(found)


class HuggingFaceAttentionSource(HeadSource):
    """Hugging Face vision attention with ``q_proj``/``k_proj``/``v_proj`` Linears:
    ViT, DeiT, DINOv2 (with registers) and ViT-MAE (``scaling``), CLIP and SigLIP (``scale``).
    The ``attention_mask`` of the call (additive, as Hugging Face passes it) is applied."""

    #: (model type, class) of the ViT family: ``num_attention_heads``, ``head_dim``, ``scaling``
    VIT_FAMILY = (("vit", "ViTAttention"), ("deit", "DeiTAttention"), ("dinov2", "Dinov2Attention"),
                  ("dinov2_with_registers", "Dinov2WithRegistersAttention"), ("vit_mae", "ViTMAEAttention"))
    #: CLIP's and SigLIP's: ``num_heads``, ``head_dim``, ``scale``
    CLIP_FAMILY = (("clip", "CLIPAttention"), ("siglip", "SiglipAttention"))

    def _vit_family(self, module: nn.Module) -> bool:
        return isinstance(module, _hf_attentions(self.VIT_FAMILY))

    def matches(self, module: nn.Module) -> bool:
        return self._vit_family(module) or isinstance(module, _hf_attentions(self.CLIP_FAMILY))

    def num_heads(self, module: nn.Module) -> int:
        return module.num_attention_heads if self._vit_family(module) else module.num_heads

    def project(self, module: nn.Module, args: tuple, kwargs: dict) -> Projection:
        x = _argument(args, kwargs, 0, "hidden_states")
        heads = self.num_heads(module)
        q, k, v = (_split_heads(F.linear(x, proj.weight, proj.bias), heads)
                   for proj in (module.q_proj, module.k_proj, module.v_proj))
        scale = module.scaling if self._vit_family(module) else module.scale
        return Projection(q, k, v, scale, _argument(args, kwargs, 1, "attention_mask"))


#: the attention modules :func:`attach_head_taps` recognises, first match wins
HEAD_SOURCES: list[HeadSource] = [MultiheadAttentionSource(), TimmAttentionSource(), HuggingFaceAttentionSource()]


def register_head_source(source: HeadSource) -> None:
    """Recognise another kind of attention module (tried before the built-in ones)."""
    HEAD_SOURCES.insert(0, source)


class HeadTap(nn.Module):
    """An identity module holding one derived tensor of its parent attention module (``what``:
    ``q``, ``k``, ``v``, ``heads`` ``[B, T, H, d]`` or ``pattern`` ``[B, H, T, T]``) so that a
    forward hook on it sees that tensor. It has no parameters."""

    def __init__(self, what: str, num_heads: int) -> None:
        super().__init__()
        self.what, self.num_heads = what, num_heads
        #: the ``q`` tap keeps the handle of its attention module's hook (to take it off again)
        self.handle: RemovableHandle | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"{self.what}, heads={self.num_heads}"


def attention_pattern(projection: Projection) -> torch.Tensor:
    """``softmax(q k^T * scale + mask)`` of every head, ``[B, H, T, S]``; the softmax in float32
    (as Hugging Face's eager attention does), returned in the queries' dtype."""
    scores = (projection.q @ projection.k.transpose(-2, -1)) * projection.scale
    if projection.mask is not None:
        scores = scores + projection.mask
    return scores.float().softmax(dim=-1).to(projection.q.dtype)


class _TapHook:
    """The forward hook (with keyword inputs) of a tapped attention module: recompute what its
    listening taps show and pass it through them. A class, not a closure, so that a tapped
    network still pickles."""

    def __init__(self, source: HeadSource) -> None:
        self.source = source

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        # returns nothing: the attention module's output stays its own
        taps = {name: module._modules[name] for name in TAP_KINDS}
        # a tap nobody hooks would compute for nothing (and double the attention's cost on
        # every step of every render): torch keeps a module's hooks in these dicts
        listening = {name for name, tap in taps.items() if tap._forward_hooks or tap._forward_pre_hooks}
        if not listening:
            return
        projection = self.source.project(module, args, kwargs)
        for name, value in (("q", projection.q), ("k", projection.k), ("v", projection.v)):
            if name in listening:
                taps[name](value.transpose(1, 2))
        if listening & {"pattern", "heads"}:
            pattern = attention_pattern(projection)
            if "pattern" in listening:
                taps["pattern"](pattern)
            if "heads" in listening:
                taps["heads"]((pattern @ projection.v).transpose(1, 2))


def _source_for(module: nn.Module) -> HeadSource | None:
    for source in HEAD_SOURCES:
        if source.matches(module):
            return source
    return None


def _tappable(net: nn.Module) -> list[tuple[str, nn.Module, HeadSource | None]]:
    """``(name, module, source)`` of the attention modules of ``net`` that are tapped (source
    ``None``) or can be: recognised, and with no attribute of a tap's name."""
    found = []
    for name, module in net.named_modules():
        if isinstance(module._modules.get("q"), HeadTap):
            found.append((name, module, None))
            continue
        source = _source_for(module)
        if source is not None and not any(tap in dir(module) for tap in TAP_KINDS):
            found.append((name, module, source))
    return found


def attach_head_taps(net: nn.Module) -> nn.Module:
    """Give every recognised attention module of ``net`` its :class:`HeadTap` children
    (``q``, ``k``, ``v``, ``pattern``, ``heads``) and the hook that feeds them; return ``net``.

    Idempotent. A module that already has an attribute of one of those names is left alone.
    Neither the network's output nor its ``state_dict`` change; :func:`detach_head_taps`
    takes them off again.
    """
    for _, module, source in _tappable(net):
        if source is None:
            continue  # tapped already
        heads = source.num_heads(module)
        for name in TAP_KINDS:
            module.add_module(name, HeadTap(name, heads))
        module._modules["q"].handle = module.register_forward_hook(_TapHook(source), with_kwargs=True)
    return net


def detach_head_taps(net: nn.Module) -> nn.Module:
    """Take :func:`attach_head_taps`' taps and hooks off ``net`` again; return ``net``."""
    for _, module, source in _tappable(net):
        if source is None:
            module._modules["q"].handle.remove()
            for name in TAP_KINDS:
                del module._modules[name]
    return net


def is_tapped(net: nn.Module) -> bool:
    """Whether ``net`` carries head taps."""
    return any(isinstance(module, HeadTap) for module in net.modules())


def attention_heads(net: nn.Module) -> dict[str, int]:
    """``{attention module name: head count}`` of the attention modules of ``net`` that are
    tapped or that :func:`attach_head_taps` would tap."""
    return {name: module._modules["q"].num_heads if source is None else source.num_heads(module)
            for name, module, source in _tappable(net)}


def split_tap(layer: str) -> tuple[str, str] | None:
    """``("encoder.layers.encoder_layer_3.self_attention", "q")`` for a tap's layer name, else
    ``None``."""
    attention, _, tap = layer.rpartition(".")
    return (attention, tap) if attention and tap in TAP_KINDS else None


def tap_layout(layer: str, heads: Mapping[str, int], prefix_tokens: int) -> Layout | None:
    """The layout of ``layer`` if it is a tap of one of the attention modules ``heads``
    (``{name: head count}``), else ``None``."""
    tap = split_tap(layer)
    if tap is None or tap[0] not in heads:
        return None
    return Layout(TAP_KINDS[tap[1]], prefix_tokens=prefix_tokens, heads=heads[tap[0]])
