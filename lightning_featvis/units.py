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

Attention heads (layers ``<attention>.q``, ``.k``, ``.v``, ``.heads`` laid out ``[B, T, H, d]``
and ``<attention>.pattern`` ``[B, H, T, T]``, see :mod:`lightning_featvis.models.attention`):
``head=2`` (all of head 2), ``head=2 neuron=5`` (neuron 5 of head 2's ``d``, in all patches),
``head=2 patch=12``, ``head=*`` (one unit per head); without ``head=`` a per-head layer is
``[B, T, H*d]`` and neuron ``n`` of head ``h`` is neuron ``h*d + n``. On a pattern,
``head=2 from=12 to=3`` is the attention of query patch 12 to key patch 3 in head 2; ``from=``
and ``to=`` count patches like ``patch=`` (``from=`` is ``patch=`` on a pattern) and ``cls`` is
the class token (``from=cls``, ``to=cls``; all prefix tokens where there are several). Without
``from=`` the queries are all patches (``cls=1`` adds the class token), without ``to=`` the keys
are all tokens, class token included, so that ``head=2 from=12`` is a whole row (summing to 1).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout

# a range wider than this is a typo, not a layer (ViT-H/14's MLP has 5120 neurons, a 1000-class
# head, ImageNet-21k's 21843 classes): refuse it before expanding it
MAX_RANGE = 100_000
_KEYS = {"neuron": "neurons", "neurons": "neurons", "patch": "patches", "patches": "patches", "class": "class", "cls": "cls",
         "direction": "direction", "head": "heads", "heads": "heads", "from": "patches", "to": "keys"}


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
        heads: attention heads of a ``heads`` or ``pattern`` layer; ``None`` means every head
            (and, on a ``heads`` layer, ``neurons`` count over all ``H*d``; with heads, within
            each head's ``d``).
        keys: key-token patches of an attention pattern (``to=``), counted like ``patches``
            (the query tokens, ``from=``); ``None`` means every key token, class token included.
        key_class_token: also select the class (prefix) tokens as keys (``to=cls``).
    """

    neurons: tuple[int, ...] | None = None
    patches: tuple[int, ...] | None = None
    class_token: bool = False
    is_class: bool = False
    direction: tuple[str, int] | None = None
    heads: tuple[int, ...] | None = None
    keys: tuple[int, ...] | None = None
    key_class_token: bool = False

    @property
    def is_pattern(self) -> bool:
        """The unit names key tokens (``to=``), so it reads an attention pattern."""
        return self.keys is not None or self.key_class_token

    @property
    def name(self) -> str:
        """A file-name-safe description, e.g. ``neuron5_patch12``, ``class3``,
        ``head2_neuron5`` or ``head2_from12_to3``."""
        parts = []
        if self.direction is not None:
            parts.append(f"{self.direction[0]}{self.direction[1]}")
        if self.heads is not None:
            parts.append(_word("head", self.heads))
        if self.neurons is not None:
            parts.append(_word("class" if self.is_class else "neuron", self.neurons))
        if self.patches is not None and self.patches:
            parts.append(f"from{_join(self.patches)}" if self.is_pattern else _word("patch", self.patches))
        if self.class_token:
            parts.append("fromcls" if self.is_pattern else "cls")
        if self.keys is not None and self.keys:
            parts.append(f"to{_join(self.keys)}")
        if self.key_class_token:
            parts.append("tocls")
        return "_".join(parts) or "all"


def _word(word: str, values: tuple[int, ...]) -> str:
    """``neuron5`` for one value, ``neurons0+1`` for several (``patch``: ``patches``)."""
    return f"{word}{values[0]}" if len(values) == 1 else f"{word}{'es' if word.endswith('ch') else 's'}{_join(values)}"


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
            (neurons are also the classes of a logits layer), and ``"heads": H`` for a
            per-head layer (:func:`layer_sizes`); with ``head=``, ``neuron=*`` is every
            neuron of one head, ``D / H``.
    """
    spec = spec.strip()
    if spec in ("", "all"):
        return [Unit()]
    axes: dict[str, list] = {}
    tokens = re.findall(r"\w+=\[[^\]]*\]|\S+", spec)
    per_head = any(_KEYS.get(token.partition("=")[0]) == "heads" for token in tokens)
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or key not in _KEYS:
            raise FeatvisError(
                f"cannot read unit {token!r} in {spec!r}; use neuron=, patch=, class=, cls=1, head=, from=, to= or 'all'"
            )
        field = _KEYS[key]
        if field == "direction":
            axes["direction"] = _parse_direction(value, sizes)
        elif field == "cls":
            axes["cls"] = [value.lower() in ("1", "true", "yes")]
        elif field == "patches" and value == "cls":
            axes["patches"], axes["cls"] = [()], [True]
        elif field == "keys" and value == "cls":
            axes["keys"], axes["key_cls"] = [()], [True]
        elif field == "heads":
            axes["heads"] = _parse_value(key, value, _head_count(value, sizes))
        else:
            size = (sizes or {}).get({"class": "neurons", "keys": "patches"}.get(field, field))
            if field == "neurons" and per_head and size is not None:
                size = size // sizes["heads"] if sizes.get("heads") else None
            axes[field] = _parse_value(key, value, size)
    if "class" in axes and ("neurons" in axes or "patches" in axes or "heads" in axes):
        raise FeatvisError(f"{spec!r}: class= cannot be combined with neuron=, patch= or head=")
    if "direction" in axes and ("neurons" in axes or "class" in axes or "heads" in axes):
        raise FeatvisError(f"{spec!r}: direction= projects all neurons of the tokens on the direction; "
                           "it cannot be combined with neuron=, class= or head= (patch= and cls= pick the tokens)")
    if "keys" in axes and "neurons" in axes:
        raise FeatvisError(f"{spec!r}: to= picks the key tokens of an attention pattern, which has no neurons; "
                           "drop neuron= (head=, from= and to= name a pattern's entries)")
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
                    heads=values.get("heads"),
                    keys=values.get("keys"),
                    key_class_token=values.get("key_cls", False),
                )
            )
    return units


def _head_count(value: str, sizes: dict | None) -> int | None:
    """What ``head=*`` stands for: the layer's head count (refused on a layer without heads)."""
    if value == "*" and sizes is not None and "neurons" in sizes and not sizes.get("heads"):
        raise FeatvisError("head=* is every attention head of a per-head layer (<attention>.q, .k, .v, .heads or "
                           ".pattern, see `featvis layers`); this layer has no heads")
    return (sizes or {}).get("heads")


def layer_sizes(tokens_shape: tuple[int, ...], layout: Layout) -> dict[str, int]:
    """What ``*`` stands for in a layer whose output viewed as tokens (:func:`as_tokens`) has
    shape ``tokens_shape`` ``[B, T, D]``: ``{"neurons": D, "patches": P}``, and ``"heads": H``
    for a per-head layer."""
    _, tokens, width = tokens_shape
    sizes = {"neurons": width, "patches": tokens - layout.prefix_tokens}
    if layout.heads:
        sizes["heads"] = layout.heads
    return sizes


def as_tokens(acts: torch.Tensor, layout: Layout) -> torch.Tensor:
    """View a layer output as a token sequence ``[B, T, D]`` according to ``layout``: a
    ``heads`` layer ``[B, T, H, d]`` as ``[B, T, H*d]``, a ``pattern`` ``[B, H, T, T]`` as its
    query tokens ``[B, T, H*T]`` (head-major, then key token)."""
    if layout.kind == "tokens":
        return acts
    if layout.kind == "tokens_transposed":
        return acts.transpose(1, 2)
    if layout.kind == "map":
        return acts.flatten(2).transpose(1, 2)
    if layout.kind == "logits":
        return acts.unsqueeze(1)
    if layout.kind == "heads":
        return acts.flatten(2)
    if layout.kind == "pattern":
        return acts.transpose(1, 2).flatten(2)
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
    if unit.heads is not None and not layout.heads:
        raise FeatvisError(f"head= needs a per-head layer, but {where} outputs {layout.kind}: the heads of an "
                           "attention module are its layers <attention>.q, .k, .v, .heads and .pattern "
                           "(`featvis layers` lists them)")
    for h in unit.heads or ():
        if not 0 <= h < layout.heads:
            raise FeatvisError(f"head {h} is out of range for {where}: it has {layout.heads} heads "
                               f"(valid heads are 0-{layout.heads - 1})")
    if unit.is_pattern and layout.kind != "pattern":
        raise FeatvisError(f"to= names key tokens of an attention pattern, but {where} outputs {layout.kind}; "
                           "the patterns are the layers <attention>.pattern")
    if unit.neurons is not None and layout.kind == "pattern":
        raise FeatvisError(f"{where} is an attention pattern [B, H, T, T], which has no neurons: name its entries "
                           "with head=, from= (query patch) and to= (key patch)")
    if unit.heads is not None:
        width //= layout.heads  # neurons count within one head
    for n in unit.neurons or ():
        if not 0 <= n < width:
            word = "class" if unit.is_class else "neuron"
            within = f" of each of its {layout.heads} heads" if unit.heads is not None else ""
            raise FeatvisError(f"{word} {n} is out of range for {where}{within}: "
                               f"valid {word}{'es' if unit.is_class else 's'} are 0-{width - 1}")
    for p in unit.patches or ():
        if not 0 <= p < num_patches:
            word = "from" if layout.kind == "pattern" else "patch"
            raise FeatvisError(f"{word} {p} is out of range for {where}: valid patches are 0-{num_patches - 1}")
    for p in unit.keys or ():
        if not 0 <= p < num_patches:
            raise FeatvisError(f"to {p} is out of range for {where}: valid patches are 0-{num_patches - 1}")
    if (unit.class_token or unit.key_class_token) and layout.prefix_tokens == 0:
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
        tokens = pick(tokens, 1, index)
    return tokens


def pick(tensor: torch.Tensor, dim: int, index: Sequence[int]) -> torch.Tensor:
    """``tensor``'s entries ``index`` along ``dim``: a view for a run of consecutive indices,
    else ``index_select`` (a list index ``t[..., [5]]`` of a large strided tensor takes a slow
    path outside inference mode: milliseconds where this takes microseconds)."""
    index = list(index)
    if index and index == list(range(index[0], index[0] + len(index))):
        return tensor.narrow(dim, index[0], len(index))
    return tensor.index_select(dim, torch.tensor(index, dtype=torch.long, device=tensor.device))


def select(acts: torch.Tensor, layout: Layout, unit: Unit) -> torch.Tensor:
    """The activations ``unit`` names in a layer output, flattened to ``[B, N]``.

    Class tokens are left out unless ``unit.class_token`` is set. A direction unit's tokens are
    projected by the objective (:func:`select_tokens`), not here. On a per-head layer the
    selected tokens are split into heads ``[B, t, H, w]`` (``w``: ``d`` neurons, or a
    pattern's key tokens) when the unit names heads or keys.
    """
    if unit.direction is not None:
        raise FeatvisError(f"direction={unit.direction[0]}[{unit.direction[1]}] needs an objective with direction "
                           "sets (NeuronObjective and its subclasses, directions: {name: file})")
    tokens = select_tokens(acts, layout, unit)
    if layout.heads and (unit.heads is not None or unit.is_pattern):
        per_head = tokens.unflatten(-1, (layout.heads, -1))
        if unit.heads is not None:
            per_head = pick(per_head, 2, unit.heads)
        if unit.is_pattern:
            prefix = layout.prefix_tokens
            keys = (list(range(prefix)) if unit.key_class_token else []) + [prefix + p for p in unit.keys or ()]
            per_head = pick(per_head, -1, keys)
        elif unit.neurons is not None:
            per_head = pick(per_head, -1, unit.neurons)
        return per_head.flatten(1)
    if unit.neurons is not None:
        tokens = pick(tokens, -1, unit.neurons)
    return tokens.flatten(1)
