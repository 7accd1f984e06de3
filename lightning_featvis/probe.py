"""Capture named layers' outputs and stop the forward pass right after the last one needed."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import torch
from torch import nn

from lightning_featvis.errors import FeatvisError


class StopForward(Exception):
    """Raised from a forward hook once every requested layer has been captured."""


def find_layer(net: nn.Module, layer: str) -> nn.Module:
    """Return the module called ``layer`` in ``net.named_modules()`` (``""`` is ``net``).

    Raises:
        FeatvisError: naming the closest valid layer names when ``layer`` does not exist.
    """
    modules = dict(net.named_modules())
    if layer in modules:
        return modules[layer]
    close = difflib.get_close_matches(layer, list(modules), n=5, cutoff=0.5)
    hint = f" Closest: {', '.join(close)}." if close else ""
    raise FeatvisError(
        f"unknown layer {layer!r} in {type(net).__name__}.{hint} "
        "Layers are dotted named_modules() names, e.g. encoder.layers.encoder_layer_3; "
        "`featvis layers` lists them all."
    )


def _first_tensor(output: object) -> torch.Tensor:
    """A module's output, or the first element of a tuple output (Hugging Face blocks) or of a
    Hugging Face ``ModelOutput`` (``logits`` or ``last_hidden_state``)."""
    while isinstance(output, (tuple, list)) or hasattr(output, "to_tuple"):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise FeatvisError(f"layer output of type {type(output).__name__} holds no tensor")
    return output


class Probe:
    """Runs a frozen network and returns the outputs of some of its layers.

    With ``stop=True`` (the default) the forward pass ends as soon as the last requested
    layer has produced its output, so layers past the target cost nothing; the gradient with
    respect to the input is the same as with the full forward pass.

    Args:
        net: the network.
        layers: dotted module names; ``""`` means the network's own output.
        stop: end the forward pass after the last requested layer.
    """

    def __init__(self, net: nn.Module, layers: Sequence[str], stop: bool = True) -> None:
        self.net = net
        self.layers = list(dict.fromkeys(layers))
        self.stop = stop
        self.modules = {layer: find_layer(net, layer) for layer in self.layers if layer != ""}

    def __call__(self, *inputs: torch.Tensor, **kw_inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward the inputs (an image batch, or keywords such as a Hugging Face model's
        ``inputs_embeds``); return ``{layer: output tensor}`` for every requested layer."""
        captured: dict[str, torch.Tensor] = {}
        # the network's own output can only come from a full forward pass
        stop = self.stop and "" not in self.layers

        def hook_for(layer: str):
            def hook(_module, _inputs, output):
                captured[layer] = _first_tensor(output)
                if stop and len(captured) == len(self.modules):
                    raise StopForward

            return hook

        # first among a module's hooks: its output is taken (and the pass may stop) before hooks
        # that compute layers attached after it (dictionaries, attention-head taps)
        handles = [module.register_forward_hook(hook_for(layer), prepend=True) for layer, module in self.modules.items()]
        try:
            output = self.net(*inputs, **kw_inputs)
            if "" in self.layers:
                captured[""] = _first_tensor(output)
        except StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return captured
