"""Any ``nn.Module`` as a model, without an adapter of its own: the input size, normalisation and
every layer's layout are read from the module and from one forward pass of a blank image.

What is read (the first that answers):

- the input side ``S``: ``image_size=``; the module's ``image_size`` (torchvision ViTs); its
  ``config.image_size`` (Hugging Face); timm's ``patch_embed.img_size``, then its
  ``pretrained_cfg["input_size"]``;
- the normalisation: ``mean=``/``std=``; timm's ``pretrained_cfg``; a Hugging Face model type's
  image processor defaults (:data:`HF_NORMALIZATION`); else ImageNet's;
- the patches ``P`` of the token layers: ``(S / patch_size)^2`` from the module's ``patch_size``
  (or ``config.patch_size``); else the ``H * W`` of the first convolution whose stride equals
  its kernel (a patch embedding);
- each layer's layout, from its output on the blank image: ``[B, C, H, W]`` is a ``map``,
  ``[B, K]`` ``logits`` (or a vector), ``[B, T, D]`` with ``T = P + k`` (``k`` at most
  :data:`MAX_PREFIX_TOKENS`) ``tokens`` with ``k`` prefix tokens (class token, registers), and
  ``[B, D, T]`` with ``T = P + k`` the transposed tokens of a Mixer's token MLP. What cannot be
  decided is a :class:`~lightning_featvis.errors.FeatvisError` naming the layer and the keyword
  to pass (``layout={"layer": "tokens"}``).

The module's attention modules (``nn.MultiheadAttention``, timm's and Hugging Face's ViT
attention) get parameter-free child layers ``.q``, ``.k``, ``.v``, ``.heads`` ``[B, T, H, d]``
and ``.pattern`` ``[B, H, T, T]`` while the adapter uses the module (from :meth:`build` to
:meth:`release`, :func:`~lightning_featvis.models.attention.attach_head_taps`; the module's
output and state dict are unchanged), laid out ``heads`` and ``pattern`` with the prefix tokens
read as for token layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout, LayoutKind, ModelAdapter
from lightning_featvis.models.attention import (
    attach_head_taps,
    attention_heads,
    detach_head_taps,
    is_tapped,
    tap_layout,
)
from lightning_featvis.probe import Probe

#: class and register tokens a token layer may carry before its patches (DINOv2 with 4
#: registers has 5)
MAX_PREFIX_TOKENS = 16
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
#: the image processors' normalisation of Hugging Face vision model types (``config.model_type``)
HF_NORMALIZATION = {
    "vit": HALF,
    "deit": IMAGENET,
    "beit": HALF,
    "clip_vision_model": OPENAI_CLIP,
    "clip": OPENAI_CLIP,
    "dinov2": IMAGENET,
    "dinov2_with_registers": IMAGENET,
    "siglip_vision_model": HALF,
    "siglip": HALF,
    "siglip2_vision_model": HALF,
}
KINDS: tuple[LayoutKind, ...] = ("tokens", "tokens_transposed", "map", "logits")


def _side(value: object) -> int | None:
    """An image or patch side from an int or an ``(h, w)`` / ``(c, h, w)`` tuple (square only)."""
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, int) for v in value):
        return value[-1] if value[-1] == value[-2 if len(value) > 1 else -1] else None
    return None


def _model_config(module: nn.Module) -> object | None:
    """A Hugging Face model's ``config`` (None for other modules)."""
    config = module.__dict__.get("config")
    return config if config is not None and hasattr(config, "model_type") else None


def _timm_config(module: nn.Module) -> Mapping:
    cfg = module.__dict__.get("pretrained_cfg") or module.__dict__.get("default_cfg")
    return cfg if isinstance(cfg, Mapping) else {}


class AnyModule(ModelAdapter):
    """A plain ``nn.Module`` (torchvision, timm, Hugging Face, your own) as a model.

    Args:
        module: the network; it is frozen for the run (``eval()``, no weight gradients) and
            takes an image batch ``[B, 3, S, S]`` as its first argument.
        image_size: the input side ``S``, when it cannot be read from the module.
        layout: layouts by layer name, for layers whose layout cannot be read from their
            output: a kind (``"tokens"``, ``"tokens_transposed"``, ``"map"``, ``"logits"``) or a
            :class:`~lightning_featvis.models.Layout` (with its ``prefix_tokens``).
        mean: the input normalisation's per-channel mean (default: read, see the module).
        std: its per-channel std.
        model_name: name in file names and TensorBoard tags (default: the class name).
        training_data: the images the module was trained on, as an image source
            (:func:`~lightning_featvis.image_sources.image_source`: a folder, ``hf:NAME``), for
            the recipes that adapt to the data (``auto``: its canvas and data prior).
    """

    def __init__(self, module: nn.Module, image_size: int | None = None,
                 layout: Mapping[str, str | Layout] | None = None,
                 mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
                 model_name: str | None = None, training_data: str | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise FeatvisError(f"a model must be an nn.Module or a ModelAdapter, got {type(module).__name__}")
        self.module = module
        self.set_options(image_size, layout, mean, std, model_name or type(module).__name__.lower(), training_data)

    def set_options(self, image_size: int | None, layout: Mapping[str, str | Layout] | None,
                    mean: tuple[float, float, float] | None, std: tuple[float, float, float] | None,
                    model_name: str, training_data: str | None = None) -> None:
        """Keep what the user gave instead of what is read (subclasses that load the module
        themselves call this instead of the constructor)."""
        self.given_size = image_size
        self.given_layouts = dict(layout or {})
        for name, value in self.given_layouts.items():
            if not isinstance(value, Layout) and value not in KINDS:
                raise FeatvisError(f"layout of {name!r}: {value!r} is not one of {', '.join(KINDS)} (or a Layout)")
        self.model_name = model_name
        self.given_mean, self.given_std = mean, std
        self.training_data = training_data
        self.config = {}

    # --- what is read from the module -----------------------------------------------------

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.given_mean or self.read_normalization()[0])

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.given_std or self.read_normalization()[1])

    def read_normalization(self) -> tuple[tuple, tuple]:
        """The normalisation the module was trained with, as far as it says: timm's
        ``pretrained_cfg``, a Hugging Face model type's defaults, else ImageNet's."""
        timm = _timm_config(self.module)
        hf = _model_config(self.module)
        if "mean" in timm and "std" in timm:
            return tuple(timm["mean"]), tuple(timm["std"])
        if hf is not None and hf.model_type in HF_NORMALIZATION:
            return HF_NORMALIZATION[hf.model_type]
        return IMAGENET

    @property
    def image_size(self) -> int:
        if self.given_size is not None:
            return int(self.given_size)
        hf = _model_config(self.module)
        embed = self.module._modules.get("patch_embed")  # timm's patch embedding knows the size it was built for
        for value in (self.module.__dict__.get("image_size"), getattr(hf, "image_size", None),
                      embed.__dict__.get("img_size") if embed is not None else None,
                      _timm_config(self.module).get("input_size")):
            side = _side(value)
            if side:
                return side
        raise FeatvisError(f"cannot read the input size of {type(self.module).__name__}: "
                           "pass image_size= (the side of the square image it takes, e.g. image_size=224)")

    def _patch_side(self) -> int | None:
        hf = _model_config(self.module)
        embed = self.module._modules.get("patch_embed")  # timm's patch embedding
        for value in (self.module.__dict__.get("patch_size"), getattr(hf, "patch_size", None),
                      embed.__dict__.get("patch_size") if embed is not None else None):
            side = _side(value)
            if side:
                return side
        return None

    @cached_property
    def _blank_outputs(self) -> dict[str, tuple[int, ...]]:
        """Every module's output shape on a blank image, by name (``""``: the module's output)."""
        was_training, was_tapped = self.module.training, is_tapped(self.module)
        self.module.eval()
        attach_head_taps(self.module)  # the taps' shapes too
        names = [name for name, _ in self.module.named_modules() if name]
        try:
            with torch.no_grad():
                outputs = Probe(self.module, names + [""], stop=False)(*self.blank_inputs(self.module)[0])
        finally:
            self.module.train(was_training)
            if not was_tapped:
                detach_head_taps(self.module)
        return {name: tuple(output.shape) for name, output in outputs.items()}

    @cached_property
    def _attention_heads(self) -> dict[str, int]:
        """``{attention module: head count}`` of the module's attention modules with head taps
        (while the adapter uses the module)."""
        return attention_heads(self.module)

    @cached_property
    def patches(self) -> int | None:
        """The patches ``P`` of the token layers (None: no patch grid could be read)."""
        side = self._patch_side()
        if side:
            return (self.image_size // side) ** 2
        for name, module in self.module.named_modules():
            if isinstance(module, nn.Conv2d) and module.stride == module.kernel_size and module.kernel_size != (1, 1):
                shape = self._blank_outputs.get(name)
                if shape is not None and len(shape) == 4:
                    return shape[2] * shape[3]
        return None

    # --- the adapter ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.model_name

    def build(self) -> nn.Module:
        return attach_head_taps(self.module)

    def release(self, net: nn.Module) -> None:
        """Take the head taps off the module again: it is the user's, given back as it came."""
        detach_head_taps(net)

    def layout(self, layer: str) -> Layout:
        given = self.given_layouts.get(layer)
        if isinstance(given, Layout):
            return given
        shape = self._blank_outputs.get(layer)
        if shape is None:
            raise FeatvisError(f"layer {layer!r} gives no tensor output in {type(self.module).__name__}")
        tap = self._tap_layout(layer, shape)
        if tap is not None:
            return tap
        inferred = self._infer(shape)
        if given is not None:  # a kind: keep the prefix tokens read from the shape, if any
            return Layout(given, inferred.prefix_tokens if inferred is not None and inferred.kind == given else 0)
        if inferred is None:
            raise FeatvisError(
                f"cannot tell the layout of layer {layer!r} (output {list(shape)}, "
                f"{'no patch grid found' if self.patches is None else f'{self.patches} patches'}): "
                f"pass layout={{{layer!r}: 'tokens'}} (or 'tokens_transposed', 'map', 'logits')")
        return inferred

    def _tap_layout(self, layer: str, shape: tuple[int, ...]) -> Layout | None:
        """The layout of an attention-head tap (None: ``layer`` is none), its prefix tokens read
        from its token axis: ``[B, T, H, d]``, a pattern's ``[B, H, T, T]``."""
        layout = tap_layout(layer, self._attention_heads, 0)
        if layout is None or self.patches is None:
            return layout
        prefix = (shape[2] if layout.kind == "pattern" else shape[1]) - self.patches
        return Layout(layout.kind, prefix if 0 <= prefix <= MAX_PREFIX_TOKENS else 0, layout.heads)

    def _infer(self, shape: tuple[int, ...]) -> Layout | None:
        if len(shape) == 4:
            return Layout("map")
        if len(shape) == 2:
            return Layout("logits")
        if len(shape) == 3 and self.patches is not None:
            if 0 <= shape[1] - self.patches <= MAX_PREFIX_TOKENS:
                return Layout("tokens", prefix_tokens=shape[1] - self.patches)
            if 0 <= shape[2] - self.patches <= MAX_PREFIX_TOKENS:
                return Layout("tokens_transposed", prefix_tokens=shape[2] - self.patches)
        return None

    @property
    def logits_layer(self) -> str:
        """The last layer with a ``[B, K]`` output (a classifier's head), or ``""``."""
        named = [n for n, s in self._blank_outputs.items() if n and len(s) == 2]
        return named[-1] if named else ""

    def __getstate__(self) -> dict:
        # the cached blank outputs are recomputed where needed (ddp_spawn pickles adapters)
        state = dict(self.__dict__)
        state.pop("_blank_outputs", None)
        state.pop("patches", None)
        state.pop("_attention_heads", None)
        return state


def adapter_for(model: nn.Module | ModelAdapter, **options: object) -> ModelAdapter:
    """The adapter of ``model``: itself if it is one, else :class:`AnyModule` with ``options``
    (``image_size``, ``layout``, ``mean``, ``std``, ``model_name``, ``training_data``)."""
    if isinstance(model, ModelAdapter):
        if options:
            raise FeatvisError(f"{', '.join(sorted(options))}: set these on the adapter "
                               f"{type(model).__name__} itself, not on the call")
        return model
    return AnyModule(model, **options)
