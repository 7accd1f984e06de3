"""What every model family provides: a frozen network, its input spec and its token layouts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError

LayoutKind = Literal["tokens", "tokens_transposed", "map", "logits", "heads", "pattern"]


@dataclass(frozen=True)
class Layout:
    """How the output tensor of one addressable layer is laid out.

    - ``tokens``: ``[B, T, D]`` with ``prefix_tokens`` class/register tokens first (ViT: 1).
    - ``tokens_transposed``: ``[B, D, T]`` (a Mixer's token-mixing MLP).
    - ``map``: ``[B, C, H, W]`` (a patch-embedding convolution); patches are ``H*W`` positions.
    - ``logits``: ``[B, K]`` class scores.
    - ``heads``: ``[B, T, H, d]``, ``heads`` attention heads of width ``d`` per token (queries,
      keys, values or head outputs, :mod:`lightning_featvis.models.attention`); viewed as
      tokens ``[B, T, H*d]``.
    - ``pattern``: ``[B, H, T, T]`` attention patterns (query token, then key token); viewed as
      tokens ``[B, T, H*T]`` (the query tokens).
    """

    kind: LayoutKind
    prefix_tokens: int = 0
    #: attention heads ``H`` of a ``heads`` or ``pattern`` layout (0 for the others)
    heads: int = 0


class ModelAdapter(ABC):
    """A model family: builds the frozen network and declares its input spec and layouts.

    Adapters are plain configuration objects (not modules) so that they can be written in
    YAML and pickled for ``ddp_spawn``; :meth:`build` does the loading.
    """

    #: channel mean/std the network expects; images are optimised in [0, 1] pixel space
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    #: dotted name of the class-logit layer
    logits_layer: str = ""
    #: the images the network was trained on, as an image source
    #: (:func:`~lightning_featvis.image_sources.image_source`: ``digits:train``, a folder,
    #: ``hf:NAME``), or ``None`` when unknown; data priors fit themselves to it by default
    training_data: str | None = None

    #: short model name used in TensorBoard tags and file names
    model_name: str
    #: the adapter's architecture arguments; ``config["image_size"]`` is the input side unless
    #: the adapter overrides :attr:`image_size`
    config: dict

    @property
    def name(self) -> str:
        """Short model name used in TensorBoard tags and file names."""
        return self.model_name

    @property
    def image_size(self) -> int:
        """Side of the square input the network takes, in pixels."""
        return self.config["image_size"]

    @abstractmethod
    def build(self) -> nn.Module:
        """Return the network with its weights loaded (the caller freezes it)."""

    @abstractmethod
    def layout(self, layer: str) -> Layout:
        """Layout of ``layer``'s output (dotted ``named_modules()`` name, ``""`` = the output)."""

    @property
    def input_description(self) -> str:
        """What the network takes, for ``featvis layers``."""
        return f"[1, 3, {self.image_size}, {self.image_size}]"

    def blank_inputs(self, net: nn.Module) -> tuple[tuple, dict]:
        """Positional and keyword inputs of one blank forward pass of ``net`` (how ``featvis
        layers`` finds every layer's output shape): a black image ``[1, 3, S, S]``."""
        s = self.image_size
        return (torch.zeros(1, 3, s, s),), {}

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """Map a ``[B, 3, H, W]`` image in [0, 1] to the network's input normalisation."""
        mean = torch.tensor(self.mean, device=image.device, dtype=image.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=image.device, dtype=image.dtype).view(1, -1, 1, 1)
        return (image - mean) / std

    def addressable(self, layer: str) -> bool:
        """Whether ``layer`` (a ``named_modules()`` name) is one a target may name and ``featvis
        layers`` lists: every layer, unless the adapter keeps some internal (a dictionary's own
        parts)."""
        return True

    def release(self, net: nn.Module) -> None:
        """Undo what :meth:`build` added to ``net`` (layers attached to a module the adapter was
        given rather than made, such as a user's module in
        :class:`~lightning_featvis.models.AnyModule`); called when a run from Python ends."""


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local weights file: a bare state dict (``torch.save`` or ``.safetensors``), or a
    Lightning/other checkpoint holding one.

    Lightning checkpoints prefix keys with the attribute that held the network (``net.``,
    ``model.``); those prefixes are stripped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FeatvisError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":  # the hub's format (timm and Hugging Face weights)
            from safetensors.torch import load_file

            obj = load_file(path, device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        # torch's own message suggests weights_only=False (unsafe for an untrusted file) and
        # filing an issue: neither helps here
        raise FeatvisError(f"cannot read checkpoint {path}: not a PyTorch weights file ({type(err).__name__}); "
                           "give a state dict saved with torch.save, or a Lightning .ckpt") from err
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise FeatvisError(f"checkpoint {path} holds no state dict")
    for prefix in ("net.", "model."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def load_into(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a local weights file into ``module``, explaining a mismatch instead of a traceback."""
    state = load_state_dict_file(path)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0:4]
        raise FeatvisError(
            f"checkpoint {path} does not match the model {type(module).__name__}: " + " ".join(first)
        ) from err
    return module
