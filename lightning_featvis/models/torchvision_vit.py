"""torchvision ``VisionTransformer`` adapters: named ImageNet ViTs and custom-sized ones.

Their networks carry attention-head taps (:mod:`lightning_featvis.models.attention`): each
block's ``encoder.layers.encoder_layer_i.self_attention`` has the layers ``.q``, ``.k``, ``.v``
and ``.heads`` ``[B, 1+P, H, d]`` and ``.pattern`` ``[B, H, 1+P, 1+P]``, class token first.
"""

from __future__ import annotations

from abc import abstractmethod

import torchvision
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout, ModelAdapter, load_into
from lightning_featvis.models.attention import TAP_KINDS, attach_head_taps, split_tap

#: the ViT builders torchvision ships, by name, with their attention heads per block
VIT_HEADS = {"vit_b_16": 12, "vit_b_32": 12, "vit_l_16": 16, "vit_l_32": 16, "vit_h_14": 16}
VIT_NAMES = tuple(VIT_HEADS)


def vit_layout(layer: str, num_heads: int = 0) -> Layout:
    """Layouts of a torchvision ``VisionTransformer``'s modules.

    ``conv_proj`` is the patch embedding ``[B, D, h, w]``; everything in ``encoder`` is a
    token sequence ``[B, 1+P, D]`` with the class token first; ``heads`` are logits. A block's
    ``self_attention.q/.k/.v/.heads`` are ``[B, 1+P, H, d]`` and its ``self_attention.pattern``
    ``[B, H, 1+P, 1+P]`` (``H = num_heads``).
    """
    if layer == "" or layer == "heads" or layer.startswith("heads."):
        return Layout("logits")
    if layer == "conv_proj":
        return Layout("map")
    tap = split_tap(layer)
    if tap is not None and tap[0].startswith("encoder.layers.") and tap[0].endswith(".self_attention"):
        return Layout(TAP_KINDS[tap[1]], prefix_tokens=1, heads=num_heads)
    return Layout("tokens", prefix_tokens=1)


class _VitAdapter(ModelAdapter):
    """Shared by the named and custom ViTs: layouts, the logits layer and the head taps."""

    logits_layer = "heads.head"

    @property
    @abstractmethod
    def num_heads(self) -> int:
        """Attention heads per block."""

    @abstractmethod
    def load(self) -> nn.Module:
        """The ``VisionTransformer`` with its weights (:meth:`build` adds the head taps)."""

    def build(self) -> nn.Module:
        return attach_head_taps(self.load())

    def layout(self, layer: str) -> Layout:
        return vit_layout(layer, self.num_heads)


class TorchvisionViT(_VitAdapter):
    """A torchvision ViT by name, with ImageNet weights or a local checkpoint.

    Args:
        name: one of ``vit_b_16, vit_b_32, vit_l_16, vit_l_32, vit_h_14``.
        weights: a member name of the model's weights enum, e.g. ``IMAGENET1K_V1`` or
            ``IMAGENET1K_SWAG_E2E_V1`` (downloaded by torchvision on first use).
            ``None`` gives random weights.
        checkpoint: a local state-dict file to load instead of downloading (the file
            torchvision would download, or your own fine-tuned weights).
        image_size: input side; by default the weights' own (224, or 512/518 for SWAG E2E).
    """

    def __init__(
        self,
        name: str = "vit_b_32",
        weights: str | None = None,
        checkpoint: str | None = None,
        image_size: int | None = None,
    ) -> None:
        if name not in VIT_NAMES:
            raise FeatvisError(f"unknown torchvision ViT {name!r}; choose one of {', '.join(VIT_NAMES)}")
        self.model_name = name
        self.weights = weights
        self.checkpoint = checkpoint
        self._image_size = image_size or self._weights_image_size()

    @property
    def image_size(self) -> int:
        return self._image_size

    def _weights_enum(self):
        if self.weights is None:
            return None
        enum = torchvision.models.get_model_weights(self.model_name)
        try:
            return enum[self.weights]
        except KeyError:
            choices = ", ".join(member.name for member in enum)
            hint = ""
            if self.weights == "None":
                # jsonargparse turns `--model.network.init_args.weights null` into this string
                hint = (" (for random weights from the command line pass the whole network: --model.network "
                        """'{"class_path": "...TorchvisionViT", "init_args": {"name": ..., "weights": null}}')""")
            raise FeatvisError(
                f"unknown weights {self.weights!r} for {self.model_name}; choose one of {choices}{hint}"
            ) from None

    def _weights_image_size(self) -> int:
        weights = self._weights_enum()
        if weights is not None and "min_size" in weights.meta:
            return int(weights.meta["min_size"][0])
        return 224

    @property
    def num_heads(self) -> int:
        return VIT_HEADS[self.model_name]

    def load(self) -> nn.Module:
        builder = torchvision.models.get_model_builder(self.model_name)
        if self.checkpoint is not None:
            return load_into(builder(weights=None, image_size=self._image_size), self.checkpoint)
        weights = self._weights_enum()
        if weights is None:
            return builder(weights=None, image_size=self._image_size)
        try:
            return builder(weights=weights)
        except Exception as err:  # noqa: BLE001 - network errors come in many types
            raise FeatvisError(
                f"could not download {self.model_name} weights {self.weights} ({type(err).__name__}: {err}). "
                f"Offline? Download {weights.url} elsewhere and pass it as a local file: "
                f"checkpoint: /path/to/{weights.url.rsplit('/', 1)[-1]}"
            ) from err


class CustomViT(_VitAdapter):
    """A torchvision ``VisionTransformer`` of any size, optionally loaded from a local file.

    Args mirror ``torchvision.models.VisionTransformer``; ``mean``/``std`` are the input
    normalisation the weights were trained with.
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        num_layers: int = 12,
        num_heads: int = 12,
        hidden_dim: int = 768,
        mlp_dim: int = 3072,
        num_classes: int = 1000,
        checkpoint: str | None = None,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        model_name: str = "custom_vit",
    ) -> None:
        if image_size % patch_size:
            raise FeatvisError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        self.config = dict(
            image_size=image_size,
            patch_size=patch_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            mlp_dim=mlp_dim,
            num_classes=num_classes,
        )
        self.checkpoint = checkpoint
        self.mean, self.std = tuple(mean), tuple(std)
        self.model_name = model_name

    @property
    def num_heads(self) -> int:
        return self.config["num_heads"]

    def load(self) -> nn.Module:
        net = VisionTransformer(**self.config)
        return load_into(net, self.checkpoint) if self.checkpoint else net

