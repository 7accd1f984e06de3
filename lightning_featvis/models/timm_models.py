"""timm adapters: any timm model by name (ViT, DeiT, MLP-Mixer, ...), pretrained or from a file."""

from __future__ import annotations

from typing import Any

from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout, ModelAdapter, load_into
from lightning_featvis.models.attention import (
    attach_head_taps,
    attention_heads,
    tap_layout,
)
from lightning_featvis.models.downloads import require_hub

#: modules whose output is one vector per image ([B, D] or [B, K]), not a token sequence
_POOLED = ("head", "fc_norm", "head_drop", "global_pool", "pre_logits")
#: patch-embedding convolutions: [B, D, h, w]
_MAPS = ("patch_embed.proj", "stem.proj")


class TimmModel(ModelAdapter):
    """A timm model by name, e.g. ``mixer_b16_224``, ``vit_base_patch16_224``,
    ``deit_small_patch16_224``.

    Layouts follow timm's module names: ``blocks.i`` and everything else token-shaped are
    ``[B, T, D]`` with the model's ``num_prefix_tokens`` (class/register tokens) first (0 for
    Mixers, and for the patch embedding, which runs before they are prepended); ``*.mlp_tokens`` (a Mixer's token-mixing MLP) sees ``[B, D, T]``; ``patch_embed.proj``
    and ``stem.proj`` are maps; ``head``, ``fc_norm`` and pooled outputs are one vector per image.
    Each ``blocks.i.attn`` (timm's ``Attention``) has the attention-head layers ``.q``, ``.k``,
    ``.v``, ``.heads`` ``[B, T, H, d]`` and ``.pattern`` ``[B, H, T, T]``
    (:mod:`lightning_featvis.models.attention`).

    Args:
        name: a timm model name (``timm.list_models()``).
        pretrained: download timm's pretrained weights on first use (needs the Hugging Face hub).
        checkpoint: a local weights file to load instead (a timm ``.pth``/``.bin`` state dict).
        model_kwargs: extra ``timm.create_model`` arguments (``img_size``, ``num_classes``, ...).
    """

    def __init__(
        self,
        name: str = "mixer_b16_224",
        pretrained: bool = False,
        checkpoint: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import timm

        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
            raise FeatvisError(f"unknown timm model {name!r}; e.g. {', '.join(close) or 'see timm.list_models()'}")
        self.model_name, self.pretrained, self.checkpoint = name, pretrained, checkpoint
        self.model_kwargs = dict(model_kwargs or {})
        cfg = timm.models.get_pretrained_cfg(name)
        self.mean = tuple(cfg.mean) if cfg else ModelAdapter.mean
        self.std = tuple(cfg.std) if cfg else ModelAdapter.std
        size = self.model_kwargs.get("img_size") or (cfg.input_size[-1] if cfg else 224)
        self._image_size = int(size if isinstance(size, int) else size[-1])
        self.logits_layer = "head"
        self._prefix_tokens: int | None = None
        self._attention_heads: dict[str, int] = {}

    @property
    def image_size(self) -> int:
        return self._image_size

    def build(self) -> nn.Module:
        import timm

        use_hub = self.pretrained and self.checkpoint is None
        if use_hub:
            self.require_weights()
        try:
            net = timm.create_model(self.model_name, pretrained=use_hub, **self.model_kwargs)
        except TypeError as err:
            raise FeatvisError(f"timm model {self.model_name}: bad model_kwargs ({err})") from err
        except Exception as err:  # noqa: BLE001 - hub errors come in many types
            if not use_hub:
                raise
            raise FeatvisError(
                f"could not download timm weights for {self.model_name} ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}). {self.offline_advice()}"
            ) from err
        if self.checkpoint is not None:
            load_into(net, self.checkpoint)
        self._prefix_tokens = int(getattr(net, "num_prefix_tokens", 0) or 0)
        attach_head_taps(net)
        self._attention_heads = attention_heads(net)
        return net

    #: the files a timm repository on the hub keeps its weights in, in timm's order of preference
    HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")

    def hub_id(self) -> str | None:
        """The hub repository timm downloads this model's weights from (None: not on the hub)."""
        import timm

        cfg = timm.models.get_pretrained_cfg(self.model_name)
        return cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else None

    def offline_advice(self) -> str:
        """What to do without the hub: which file to fetch and where to give it."""
        repo = self.hub_id()
        if repo is None:
            return "Offline? Download the weights elsewhere and pass the file: checkpoint: /path/to/weights.pth"
        return (f"On a connected machine run `hf download {repo} model.safetensors --local-dir DIR` and pass "
                "checkpoint: DIR/model.safetensors")

    def require_weights(self) -> None:
        """Fail at once, saying what to fetch, when the weights are neither cached nor downloadable."""
        repo = self.hub_id()
        if repo is not None:
            require_hub(repo, self.HUB_FILES, f"timm weights for {self.model_name}", self.offline_advice())

    def layout(self, layer: str) -> Layout:
        if self._prefix_tokens is None:
            self.build()  # the class-token count comes from the built model
        tap = tap_layout(layer, self._attention_heads, self._prefix_tokens)
        if tap is not None:
            return tap
        last = layer.rsplit(".", 1)[-1]
        if layer == "" or layer.split(".")[0] in _POOLED or last in _POOLED:
            return Layout("logits")
        if any(layer == m or layer.endswith("." + m) for m in _MAPS):
            return Layout("map")
        if ".mlp_tokens" in layer or layer.endswith("mlp_tokens"):
            return Layout("tokens_transposed")
        if layer.split(".")[0] in ("patch_embed", "stem"):
            return Layout("tokens")  # the patch embedding runs before class tokens are prepended
        return Layout("tokens", prefix_tokens=self._prefix_tokens)
