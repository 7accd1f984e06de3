"""List every addressable layer of a model with its output shape and token layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.probe import Probe


@dataclass(frozen=True)
class LayerInfo:
    """One addressable module: dotted name, class name, output shape for one image, layout."""

    name: str
    kind: str
    shape: tuple[int, ...]
    layout: str


def describe_layers(adapter: ModelAdapter) -> list[LayerInfo]:
    """Run one blank input (a black image, a short sentence) through ``adapter``'s network
    (random or loaded weights alike) and describe every module whose output holds a tensor, in
    forward order."""
    net = adapter.build()
    # a module passed in (AnyModule) is the user's: give it back in the mode it came in
    was_training = net.training
    net.eval()
    modules = dict(net.named_modules())  # before release() takes attached layers off again
    names = [name for name in modules if name and adapter.addressable(name)]
    args, kwargs = adapter.blank_inputs(net)
    try:
        with torch.no_grad():
            outputs = Probe(net, names + [""], stop=False)(*args, **kwargs)
    finally:
        net.train(was_training)
        adapter.release(net)
    infos = []
    for name, output in outputs.items():
        try:
            layout = adapter.layout(name)
        except FeatvisError:  # a plain module's layer whose layout its output cannot tell
            described = "unknown (pass layout=)"
        else:
            prefix = layout.prefix_tokens
            notes = ["1 class token" if prefix == 1 else f"{prefix} prefix tokens"] if prefix else []
            notes += [f"{layout.heads} heads"] if layout.heads else []
            described = layout.kind + (f" ({', '.join(notes)})" if notes else "")
        kind = type(modules[name]).__name__
        infos.append(LayerInfo(name or "(output)", kind, tuple(output.shape), described))
    return infos


def format_layers(infos: list[LayerInfo]) -> str:
    """A plain-text table of :func:`describe_layers`' result."""
    rows = [("layer", "module", "output shape", "layout")]
    rows += [(i.name, i.kind, "[" + ", ".join(map(str, i.shape)) + "]", i.layout) for i in infos]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip() for row in rows
    )
