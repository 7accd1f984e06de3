"""Units: which activations of a captured layer output a target drives, for every layout.

A unit names neurons (channels) and patches (tokens). Every layout is first viewed as a token
sequence ``[B, T, D]`` so one selection rule serves ViT blocks (class token first), Mixer token
MLPs (``[B, D, T]``), patch-embedding maps (``[B, C, H, W]``, patches in row-major order) and
logits (``[B, K]``, one token whose neurons are the classes). The layout always comes from the
model adapter, never from the tensor's rank.

Unit specifications are short strings, e.g. ``neuron=5`` (one neuron in all patches),
``neuron=[0,1,2]`` (three neurons together), ``neuron=5 patch=12`` (one neuron in one patch),
``patch=12`` (all neurons of one patch), ``class=3`` (a class logit), ``all`` (the whole
layer), ``neuron=5 cls=1`` (include the class token), ``direction=sae[3]`` (row 3 of the
direction set ``sae``, see :mod:`lightning_featvis.directions`; with ``patch=`` and ``cls=`` as
for neurons). A range ``a-b`` expands into one unit
per value; a bracketed list is one unit. ``*`` is every index of the layer (``neuron=*``: one
unit per neuron, ``class=*``: per class, ``patch=*``: per patch, ``direction=sae[*]``: per row
of the set); it needs the layer's sizes,
which the objective gives when it reads the targets.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout

# a range wider than this is a typo, not a layer (ViT-H/14's MLP has 5120 neurons, a 1000-class
# head, ImageNet-21k's 21843 classes): refuse it before expanding it
MAX_RANGE = 100_000
_KEYS = {"neuron": "neurons", "neurons": "neurons", "patch": "patches", "patches": "patches", "class": "class", "cls": "cls",
         "direction": "direction"}


@dataclass(frozen=True)
class Unit:
    """A selection of activations in one layer.

    Attributes:
        neurons: channel indices (the ``D`` axis); ``None`` means every neuron.
        patches: patch-token indices counted from the first patch (class tokens excluded);
            ``None`` means every patch, ``()`` none (with ``class_token``: the class token alone).
        class_token: also select the class (prefix) tokens.
        is_class: the neurons are class logits (only changes the name).
        direction: ``(set, row)``: the selected tokens projected on that direction instead of
            their neurons (the objective projects them, :meth:`~lightning_featvis.directions.DirectionSets.project`).
    """

    neurons: tuple[int, ...] | None = None
    patches: tuple[int, ...] | None = None
    class_token: bool = False
    is_class: bool = False
    direction: tuple[str, int] | None = None

    @property
    def name(self) -> str:
        """A file-name-safe description, e.g. ``neuron5_patch12`` or ``class3``."""
        parts = []
        if self.direction is not None:
            parts.append(f"{self.direction[0]}{self.direction[1]}")
        if self.neurons is not None:
            word = "class" if self.is_class else "neuron"
            parts.append(f"{word}{self.neurons[0]}" if len(self.neurons) == 1 else f"{word}s{_join(self.neurons)}")
        if self.patches is not None and self.patches:
            parts.append(f"patch{self.patches[0]}" if len(self.patches) == 1 else f"patches{_join(self.patches)}")
        if self.class_token:
            parts.append("cls")
        return "_".join(parts) or "all"


def _join(values: tuple[int, ...]) -> str:
    return "+".join(str(v) for v in values)


def _parse_value(key: str, text: str, size: int | None = None) -> list[tuple[int, ...]]:
    """``5`` -> [(5,)]; ``0-3`` -> [(0,), (1,), (2,), (3,)]; ``[0,2-3]`` -> [(0, 2, 3)];
    ``*`` -> one tuple per index below ``size``."""
    if text == "*":
        if size is None:
            raise FeatvisError(f"{key}=* means every {key} of the layer, which is only known with the model: "
                               "give targets to a run (data: targets), not to parse_units alone")
        return [(v,) for v in range(size)]

    def ints(item: str) -> list[int]:
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
        if not m:
            raise FeatvisError(f"cannot read {key}={text!r}: use an index (5), a range (0-15) or a set ([0,1,2])")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise FeatvisError(f"empty range {key}={text!r}")
        if hi - lo >= MAX_RANGE:
            raise FeatvisError(f"range {key}={text!r} has {hi - lo + 1} values, more than any layer here "
                               f"({MAX_RANGE} at most); {key}=* is every {key} of the layer")
        return list(range(lo, hi + 1))

    if text.startswith("[") and text.endswith("]"):
        items = [item for item in text[1:-1].split(",") if item.strip()]
        if not items:
            raise FeatvisError(f"empty set {key}={text!r}: list at least one index, e.g. {key}=[0,2]")
        return [tuple(v for item in items for v in ints(item))]
    return [(v,) for v in ints(text)]


def _parse_direction(text: str, sizes: dict | None) -> list[tuple[str, int]]:
    """``sae[3]`` -> [("sae", 3)]; ``sae[0-2]`` -> three; ``sae[*]`` -> one per row of the set."""
    m = re.fullmatch(r"(\w+)\[([^\]]*)\]", text.strip())
    if not m:
        raise FeatvisError(f"cannot read direction={text!r}: use direction=NAME[ROW], e.g. direction=sae[3], "
                           "a range direction=sae[0-15] or every row direction=sae[*]")
    name, rows = m.group(1), m.group(2).strip()
    known = (sizes or {}).get("directions")
    if rows == "*" and known is not None and name not in known:
        raise FeatvisError(f"unknown direction set {name!r}; the sets are {', '.join(sorted(known)) or 'none'}")
    size = known.get(name) if known is not None else None
    if rows == "*" and size is None:
        raise FeatvisError(f"direction={name}[*] is every row of the direction set {name!r}, known only from the "
                           f"objective's direction sets (directions: {{{name}: file}})")
    return [(name, row) for (row,) in _parse_value(f"direction={name}[...]", rows, size)]


def parse_units(spec: str, sizes: dict[str, int] | None = None) -> list[Unit]:
    """Expand one unit specification (see the module docstring) into units.

    Args:
        sizes: what ``*`` stands for in the unit's layer: ``{"neurons": D, "patches": P}``
            (neurons are also the classes of a logits layer).
    """
    spec = spec.strip()
    if spec in ("", "all"):
        return [Unit()]
    axes: dict[str, list] = {}
    for token in re.findall(r"\w+=\[[^\]]*\]|\S+", spec):
        key, sep, value = token.partition("=")
        if not sep or key not in _KEYS:
            raise FeatvisError(
                f"cannot read unit {token!r} in {spec!r}; use neuron=, patch=, class=, cls=1 or 'all'"
            )
        field = _KEYS[key]
        if field == "direction":
            axes["direction"] = _parse_direction(value, sizes)
        elif field == "cls":
            axes["cls"] = [value.lower() in ("1", "true", "yes")]
        elif field == "patches" and value == "cls":
            axes["patches"], axes["cls"] = [()], [True]
        else:
            size = (sizes or {}).get("neurons" if field == "class" else field)
            axes[field] = _parse_value(key, value, size)
    if "class" in axes and ("neurons" in axes or "patches" in axes):
        raise FeatvisError(f"{spec!r}: class= cannot be combined with neuron= or patch=")
    if "direction" in axes and ("neurons" in axes or "class" in axes):
        raise FeatvisError(f"{spec!r}: direction= projects all neurons of the tokens on the direction; "
                           "it cannot be combined with neuron= or class= (patch= and cls= pick the tokens)")
    fields = list(axes)
    units = []
    for combo in itertools.product(*(axes[f] for f in fields)):
        values = dict(zip(fields, combo))
        if "class" in values:
            units.append(Unit(neurons=values["class"], is_class=True))
        else:
            units.append(
                Unit(
                    neurons=values.get("neurons"),
                    patches=values.get("patches"),
                    class_token=values.get("cls", False),
                    direction=values.get("direction"),
                )
            )
    return units


def as_tokens(acts: torch.Tensor, layout: Layout) -> torch.Tensor:
    """View a layer output as a token sequence ``[B, T, D]`` according to ``layout``."""
    if layout.kind == "tokens":
        return acts
    if layout.kind == "tokens_transposed":
        return acts.transpose(1, 2)
    if layout.kind == "map":
        return acts.flatten(2).transpose(1, 2)
    if layout.kind == "logits":
        return acts.unsqueeze(1)
    raise FeatvisError(f"unknown layout {layout.kind!r}")


def check_unit(unit: Unit, layout: Layout, tokens_shape: tuple[int, ...], layer: str = "") -> None:
    """Raise a FeatvisError naming the valid range if ``unit`` does not fit the layer.

    Args:
        tokens_shape: the ``[B, T, D]`` shape of the layer output viewed as tokens.
    """
    _, num_tokens, width = tokens_shape
    num_patches = num_tokens - layout.prefix_tokens
    where = f"layer {layer!r}" if layer else "this layer"
    if unit.is_class and layout.kind != "logits":
        raise FeatvisError(f"class= needs a logits layer, but {where} outputs {layout.kind}")
    for n in unit.neurons or ():
        if not 0 <= n < width:
            word = "class" if unit.is_class else "neuron"
            raise FeatvisError(f"{word} {n} is out of range for {where}: valid {word}{'es' if unit.is_class else 's'} are 0-{width - 1}")
    for p in unit.patches or ():
        if not 0 <= p < num_patches:
            raise FeatvisError(f"patch {p} is out of range for {where}: valid patches are 0-{num_patches - 1}")
    if unit.class_token and layout.prefix_tokens == 0:
        raise FeatvisError(f"{where} has no class token ({layout.kind} layout); drop cls=")


def select_tokens(acts: torch.Tensor, layout: Layout, unit: Unit) -> torch.Tensor:
    """The tokens ``unit`` names (its patches, and class tokens if ``unit.class_token``), all
    their neurons: ``[B, t, D]``."""
    tokens = as_tokens(acts, layout)
    prefix = layout.prefix_tokens
    if unit.patches is None:
        first = 0 if unit.class_token else prefix
        tokens = tokens[:, first:]
    else:
        index = list(range(prefix)) if unit.class_token else []
        index += [prefix + p for p in unit.patches]
        tokens = tokens[:, index]
    return tokens


def select(acts: torch.Tensor, layout: Layout, unit: Unit) -> torch.Tensor:
    """The activations ``unit`` names in a layer output, flattened to ``[B, N]``.

    Class tokens are left out unless ``unit.class_token`` is set. A direction unit's tokens are
    projected by the objective (:func:`select_tokens`), not here.
    """
    if unit.direction is not None:
        raise FeatvisError(f"direction={unit.direction[0]}[{unit.direction[1]}] needs an objective with direction "
                           "sets (NeuronObjective and its subclasses, directions: {name: file})")
    tokens = select_tokens(acts, layout, unit)
    if unit.neurons is not None:
        tokens = tokens[..., list(unit.neurons)]
    return tokens.flatten(1)
