"""Dictionaries (sparse autoencoders, transcoders, any module mapping ``[..., D]`` to
``[..., K]``) attached after a layer, as addressable layers of their own.

``WithDictionaries(DigitsViT(), {"encoder.layers.encoder_layer_3.sae": DigitsSAE()})`` adds the
layer ``encoder.layers.encoder_layer_3.sae``: the dictionary's codes for each token of block 3,
``[B, T, K]``, with block 3's class token first, so its units are units like any others
(``neuron=17`` in all patches, ``neuron=17 patch=27``, ``neuron=*``). The network's own output
is unchanged: the dictionary reads the layer's output beside the forward pass, and a forward
that stops at the dictionary (the objective's early exit) stops there.

An `overcomplete <https://github.com/KempnerInstitute/overcomplete>`_ SAE gives two layers: the
codes (``...sae``, what its ``encode`` returns: for a TopK SAE only k non-zero per token) and
the codes before its sparsifying activation (``...sae.pre_codes``, dense), which give every
latent a gradient: rendering a latent that is not among a token's top k can only start there.

Shapes: B images, T tokens (prefix tokens first), D the layer's width, K the dictionary's size.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout, ModelAdapter, load_into
from lightning_featvis.probe import find_layer
from lightning_featvis.units import as_tokens


class Dictionary(ABC):
    """A dictionary as configuration (YAML): :meth:`build` returns the module, weights loaded."""

    @abstractmethod
    def build(self) -> nn.Module:
        """The dictionary module (the caller freezes it)."""


class OvercompleteSAE(Dictionary):
    """An ``overcomplete`` sparse autoencoder loaded from a state dict file.

    Args:
        checkpoint: the SAE's ``state_dict()`` saved with ``torch.save``.
        kind: the SAE class in ``overcomplete.sae`` (``TopKSAE``, ``BatchTopKSAE``, ``JumpSAE``,
            ``SAE``, ...).
        input_size: D, the width of the layer it reads.
        nb_concepts: K, the number of latents.
        options: the class's other arguments (``top_k`` for a TopK SAE).
    """

    def __init__(self, checkpoint: str, input_size: int, nb_concepts: int, kind: str = "TopKSAE",
                 options: dict | None = None) -> None:
        self.checkpoint, self.kind = checkpoint, kind
        self.input_size, self.nb_concepts, self.options = input_size, nb_concepts, dict(options or {})

    def build(self) -> nn.Module:
        sae_module = import_overcomplete_sae()
        cls = getattr(sae_module, self.kind, None)
        if not (isinstance(cls, type) and issubclass(cls, sae_module.SAE)):
            raise FeatvisError(f"overcomplete has no SAE class {self.kind!r} (e.g. TopKSAE, BatchTopKSAE, JumpSAE)")
        if not Path(self.checkpoint).expanduser().is_file():
            raise FeatvisError(f"SAE checkpoint not found: {self.checkpoint}")
        return load_into(cls(self.input_size, self.nb_concepts, **self.options), self.checkpoint)


def import_overcomplete_sae():
    """``overcomplete.sae``, or an error saying how to install it."""
    try:
        import overcomplete.sae as sae_module
    except ImportError as err:
        raise FeatvisError("sparse autoencoders need the overcomplete package: pip install 'lightning_featvis[sae]' "
                           f"({err})") from err
    return sae_module


def _is_overcomplete_sae(module: nn.Module) -> bool:
    # only a module of overcomplete's own can be one of its SAEs: import it just then
    if not type(module).__module__.startswith("overcomplete"):
        return False
    return isinstance(module, import_overcomplete_sae().SAE)


class DictionaryLayer(nn.Module):
    """Runs a dictionary on a layer's output viewed as tokens; its output is the codes ``[B, T, K]``.

    Args:
        dictionary: an ``overcomplete`` SAE (its ``encode`` gives pre-codes and codes) or any
            module mapping ``[N, D]`` to ``[N, K]`` (its output is the codes).
        layout: the layout of the layer it reads.
    """

    def __init__(self, dictionary: nn.Module, layout: Layout) -> None:
        super().__init__()
        self.dictionary, self.layout = dictionary, layout
        self.sae = _is_overcomplete_sae(dictionary)
        self.pre_codes = nn.Identity()  # a named module, so the dense pre-codes are a layer too

    def forward(self, output: torch.Tensor) -> torch.Tensor:
        tokens = as_tokens(output, self.layout)  # [B, T, D]
        batch, count, width = tokens.shape
        flat = tokens.reshape(batch * count, width)
        if self.sae:
            pre_codes, codes = self.dictionary.encode(flat)
            self.pre_codes(pre_codes.reshape(batch, count, -1))
        else:
            codes = self.dictionary(flat)
        if not (isinstance(codes, torch.Tensor) and codes.dim() == 2 and codes.shape[0] == flat.shape[0]):
            raise FeatvisError(f"a dictionary maps [N, D] tokens to [N, K] codes; {type(self.dictionary).__name__} "
                               f"gave {tuple(getattr(codes, 'shape', ()))} for [{flat.shape[0]}, {width}]")
        return codes.reshape(batch, count, -1)


def _listened(module: nn.Module) -> bool:
    # torch keeps a module's hooks in these dicts: a probe of the layer has put one there
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _run_after(layer: DictionaryLayer):
    def hook(_module, _inputs, output):
        if not (_listened(layer) or _listened(layer.pre_codes)):
            return  # no target reads the codes: the dictionary would compute for nothing
        while isinstance(output, (tuple, list)):  # Hugging Face blocks return tuples
            output = output[0]
        layer(output)  # its output is read by hooks on it; the network's own is unchanged

    return hook


class NetworkWithDictionaries(nn.Module):
    """The network and its dictionaries: runs ``net`` unchanged, and names the dictionaries
    among its layers.

    The dictionaries are not children of the layers they read: a child of an ``nn.Sequential``
    would run as one more step of it. So this module lists them in :meth:`named_modules`
    under their own names (``encoder.layers.encoder_layer_3.sae``) beside the network's
    layers, named as in the network itself; the hooks :class:`WithDictionaries` put on the
    layers they read run them.
    """

    def __init__(self, net: nn.Module, dictionaries: dict[str, DictionaryLayer]) -> None:
        super().__init__()
        self.net = net
        # in a ModuleDict so that .to(), .eval() and parameters() reach them; its keys cannot
        # hold dots
        self.dictionaries = nn.ModuleDict({name.replace(".", "__"): layer for name, layer in dictionaries.items()})
        self.names = list(dictionaries)

    def forward(self, *args, **kwargs):
        return self.net(*args, **kwargs)

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        memo = set() if memo is None else memo
        yield from self.net.named_modules(memo, prefix, remove_duplicate)
        for name, layer in zip(self.names, self.dictionaries.values()):
            yield from layer.named_modules(memo, f"{prefix}.{name}" if prefix else name, remove_duplicate)


class WithDictionaries(ModelAdapter):
    """``network`` with dictionaries attached after some of its layers.

    Args:
        network: the model's adapter.
        dictionaries: ``{new layer name: dictionary}``; the name is the layer it reads, a dot
            and a name of its own (``encoder.layers.encoder_layer_3.sae`` reads
            ``encoder.layers.encoder_layer_3``). A dictionary is a :class:`Dictionary` (YAML:
            ``{class_path: lightning_featvis.OvercompleteSAE, init_args: {...}}``) or, from
            Python, a module.
    """

    def __init__(self, network: ModelAdapter, dictionaries: Mapping[str, Dictionary | nn.Module]) -> None:
        if not dictionaries:
            raise FeatvisError("WithDictionaries needs at least one dictionary: {'<layer>.<name>': dictionary}")
        self.network, self.dictionaries = network, dict(dictionaries)
        for name in self.dictionaries:
            if "." not in name.strip("."):
                raise FeatvisError(f"dictionary layer {name!r}: name it after the layer it reads, "
                                   "e.g. encoder.layers.encoder_layer_3.sae")
        self.model_name, self.config = network.name, network.config
        self.mean, self.std, self.logits_layer = network.mean, network.std, network.logits_layer
        self.training_data = network.training_data
        self._attached: list = []  # the hooks build() put on the network's layers

    def __getstate__(self) -> dict:
        # hook handles do not pickle (ddp_spawn); a spawned process builds its own network
        return {**self.__dict__, "_attached": []}

    @property
    def image_size(self) -> int:
        return self.network.image_size

    @property
    def input_description(self) -> str:
        return self.network.input_description

    def blank_inputs(self, net: nn.Module) -> tuple[tuple, dict]:
        return self.network.blank_inputs(net.net if isinstance(net, NetworkWithDictionaries) else net)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return self.network.normalize(image)

    def build(self) -> nn.Module:
        net = self.network.build()
        attached = {}
        for name, dictionary in self.dictionaries.items():
            parent_name = name.rpartition(".")[0]
            parent = find_layer(net, parent_name)
            if name in dict(net.named_modules()):
                raise FeatvisError(f"dictionary layer {name!r}: the network already has a layer of that name")
            module = dictionary.build() if isinstance(dictionary, Dictionary) else dictionary
            if not isinstance(module, nn.Module):
                raise FeatvisError(f"dictionary {name!r} is a {type(module).__name__}, not a module or a Dictionary")
            attached[name] = layer = DictionaryLayer(module, self.network.layout(parent_name))
            self._attached.append(parent.register_forward_hook(_run_after(layer)))
        return NetworkWithDictionaries(net, attached)

    def release(self, net: nn.Module) -> None:
        """Take the dictionaries' hooks off the network again (a user's module is given back as
        it came)."""
        for handle in self._attached:
            handle.remove()
        self._attached.clear()
        self.network.release(net.net if isinstance(net, NetworkWithDictionaries) else net)

    def dictionary_of(self, layer: str) -> str | None:
        """The dictionary layer ``layer`` is (or is inside: its ``pre_codes``), if any."""
        for name in self.dictionaries:
            if layer == name or layer.startswith(name + "."):
                return name
        return None

    def addressable(self, layer: str) -> bool:
        # a dictionary's own modules see flattened tokens [B * T, ...]: its layer and its
        # pre-codes are the addressable views of them
        name = self.dictionary_of(layer)
        if name is None:
            return self.network.addressable(layer)
        return layer in (name, f"{name}.pre_codes")

    def layout(self, layer: str) -> Layout:
        name = self.dictionary_of(layer)
        if name is None:
            return self.network.layout(layer)
        # codes are one row per token of the layer read: its prefix tokens stay first
        read = self.network.layout(name.rpartition(".")[0])
        return Layout("tokens", read.prefix_tokens if read.kind == "tokens" else 0)
