"""``torch.compile`` of the frozen network, for any objective: a plain Lightning callback."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import lightning as L
import torch
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.plan import RunPlan


@runtime_checkable
class FrozenNetworkObjective(Protocol):
    """What :class:`CompileNetwork` needs of the module it runs with (every
    :class:`~lightning_featvis.VisualizationObjective` has it): the run's plan, whose targets
    name the layers read, and the frozen network."""

    plan: RunPlan | None

    def build_network(self) -> nn.Module: ...


def compile_network(net: nn.Module, layers: Iterable[str], **options) -> list[nn.Module]:
    """Run compiled (``torch.compile``) the ``forward`` of every module of ``net`` that is none
    of ``layers`` and holds none of them inside it, largest first; return those modules.

    The modules that are or hold layers stay eager: the forward hooks that read the layers (and
    stop the pass after the deepest one) come and go with each step, and a compiled module
    would recompile for each; their target-free parts, where the work is, run compiled. One
    compiled function serves all modules of a class (a ViT's blocks share one), so the
    compiler's per-function cache of variants is not exhausted by a deep network.
    ``options`` are ``torch.compile``'s (``mode``, ``dynamic``, ``backend``...).
    """
    needed = {layer for layer in layers if layer}
    per_class: dict[type, object] = {}
    compiled = []

    def visit(name: str, module: nn.Module) -> None:
        holds = name in needed or (any(layer.startswith(f"{name}.") for layer in needed) if name else True)
        if not holds:
            cls = type(module)
            if cls not in per_class:
                per_class[cls] = torch.compile(_entry(cls), **options)
            module.forward = functools.partial(per_class[cls], module)
            compiled.append(module)
            return
        for child, submodule in module.named_children():
            visit(f"{name}.{child}" if name else child, submodule)

    visit("", net)
    return compiled


def _entry(cls: type) -> Callable:
    """A function calling ``cls.forward`` whose code object is its own: torch.compile keeps its
    variants per code object, and entering library code (torchvision's, timm's) directly would
    share one code object, and one small cache, among all compiled classes."""

    def forward(module: nn.Module, *args, **kwargs):
        return cls.forward(module, *args, **kwargs)

    forward.__code__ = forward.__code__.replace(co_name=f"forward_of_{cls.__name__}")
    return forward


def uncompile(modules: Iterable[nn.Module]) -> None:
    """Give :func:`compile_network`'s modules their own ``forward`` back."""
    for module in modules:
        module.__dict__.pop("forward", None)


class CompileNetwork(L.Callback):
    """Runs the objective's frozen network compiled with ``torch.compile`` (:func:`compile_network`):
    the same images as eager mode within rounding, faster where the compiler has the hardware's
    kernels (a GPU, especially in ``bf16-mixed``). The first steps of each shape compile.

    Args:
        mode: ``torch.compile``'s mode (``default``, ``reduce-overhead``, ``max-autotune``).
        dynamic: let shapes vary without recompiling (``None``: torch decides).
    """

    def __init__(self, mode: str | None = None, dynamic: bool | None = None) -> None:
        self.mode, self.dynamic = mode, dynamic
        self.compiled: list[nn.Module] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not isinstance(pl_module, FrozenNetworkObjective) or pl_module.plan is None:
            raise FeatvisError(f"CompileNetwork compiles a visualization objective's network, not {type(pl_module).__name__}'s")
        plan = pl_module.plan
        layers = {part.layer for t in plan.targets for part in t.parts}
        if plan.diversity.weight and plan.diversity.layer:
            layers.add(plan.diversity.layer)
        options = {"dynamic": self.dynamic} | ({"mode": self.mode} if self.mode else {})
        self.compiled = compile_network(pl_module.build_network(), layers, **options)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # a user's own module (render) goes back as it came
        uncompile(self.compiled)
        self.compiled = []
