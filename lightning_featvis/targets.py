"""Targets: which units a run visualises (a layer and a unit, and for text runs a sentence),
parsed from specifications such as ``heads.head:class=0-9``, and the groups they are cut into.

A target may also be a weighted sum of units, across layers (objective algebra):
``"0.5 * encoder.layers.encoder_layer_1:neuron=3 - encoder.layers.encoder_layer_3:neuron=7"``
(terms separated by `` + `` or `` - `` with spaces around them, each an optional weight and
``*`` before one unit), or in YAML the list form ``[[0.5, "layer:neuron=3"], [-1, "layer:neuron=7"]]``.
Its loss is the weighted sum of its terms' losses, so its gradient is the weighted sum of theirs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from lightning_featvis.errors import FeatvisError
from lightning_featvis.units import Unit, parse_units


@dataclass(frozen=True)
class Term:
    """One weighted unit of a sum: ``weight`` times ``unit`` of ``layer``."""

    weight: float
    layer: str | None
    unit: Unit

    @property
    def key(self) -> str:
        return f"{self.weight:g}*{self.layer or ''}:{self.unit.name}"

    @property
    def target(self) -> Target:
        """The one-unit target this term drives (without its weight)."""
        return Target(self.layer, self.unit)


@dataclass(frozen=True)
class Target:
    """One input to generate: a unit of a layer (``layer=None``: the objective's default) and,
    for text runs, which of the run's sentences it reconstructs (``sentence``, an index into
    :attr:`SentenceTargets.sentences`)."""

    layer: str | None
    unit: Unit
    sentence: int | None = None
    #: a weighted sum of units (empty: the target is ``unit`` of ``layer``); ``layer`` is then
    #: the first term's, for tags and tables
    terms: tuple[Term, ...] = ()
    #: which image of the target this is (``images_per_target``, or the target listed again):
    #: copies are seeded apart and kept in one group, where ``diversity`` pushes them apart
    copy: int = 0
    #: the interpolation this target is a frame of (its specification), if any: frames are
    #: kept in one group and share part of their parameters (:class:`~lightning_featvis.params.SharedImage`)
    shared: str | None = None

    @property
    def parts(self) -> tuple[Term, ...]:
        """The weighted units this target drives: its terms, or its own unit with weight 1."""
        return self.terms or (Term(1.0, self.layer, self.unit),)

    @property
    def description(self) -> str:
        """The unit's name, or a sum's terms, e.g. ``0.5*encoder.layers.encoder_layer_1:neuron3 + ...``."""
        return " + ".join(term.key for term in self.terms) if self.terms else self.unit.name

    @property
    def key(self) -> str:
        """Stable identity (seeds the canvas and jitter), e.g. ``encoder.layers.encoder_layer_3:neuron5``,
        with a sentence ``transformer.h.0:all@2``, a further image of it ``...:neuron5#1``."""
        suffix = ("" if self.sentence is None else f"@{self.sentence}") + (f"#{self.copy}" if self.copy else "")
        if self.terms:
            return f"sum({self.description}){suffix}"
        return f"{self.layer or ''}:{self.unit.name}{suffix}"

    @property
    def identity(self) -> str:
        """The key of the target's first image: the same for all its copies."""
        return replace(self, copy=0).key

    @property
    def block(self) -> str:
        """What this target is rendered together with, in one group: its interpolation's other
        frames, or its own other images."""
        return self.shared if self.shared is not None else self.identity

    @property
    def shared_set(self) -> str | None:
        """The canvases this one shares parameters with: its interpolation's frames of the same copy."""
        return None if self.shared is None else f"{self.shared}#{self.copy}"

    @property
    def file_stem(self) -> str:
        """File name without extension, e.g. ``encoder.layers.encoder_layer_3__neuron5`` (with a
        sentence: ``transformer.h.0__all__sentence2``)."""
        suffix = ("" if self.sentence is None else f"__sentence{self.sentence}") + (f"__copy{self.copy}" if self.copy else "")
        if self.terms:
            safe = re.sub(r"[^\w.+-]+", "_", "__".join(f"{term.weight:g}x{term.layer or 'output'}.{term.unit.name}"
                                                     for term in self.terms))
            return f"sum__{safe}{suffix}"
        return f"{self.layer or 'output'}__{self.unit.name}{suffix}"

    def resolved(self, default_layer: str | None) -> Target:
        """This target with ``default_layer`` for the layer it (or a term) leaves out."""
        if not self.terms:
            return self if self.layer is not None else replace(self, layer=default_layer)
        terms = tuple(term if term.layer is not None else replace(term, layer=default_layer) for term in self.terms)
        return replace(self, layer=terms[0].layer, terms=terms)


def parse_targets(
    specs: str | list[str],
    unit_sizes: Callable[[str], dict[str, int]] | None = None,
    default_layer: str | None = None,
) -> list[Target]:
    """Expand target specifications ``[layer:]unit`` into targets.

    ``"heads.head:class=0-9"`` gives ten targets; ``"neuron=0-15"`` gives sixteen on the
    objective's default layer. See :mod:`lightning_featvis.units` for the unit grammar. A target
    listed again is another image of it (``copy`` 1, 2, ...: seeded apart).

    Args:
        unit_sizes: a layer's sizes for ``*`` (``neuron=*``: every neuron), e.g.
            :meth:`VisualizationObjective.unit_sizes`; asked only for specs that use ``*``.
        default_layer: the layer of specs that name none, for their ``*``.
    """
    if isinstance(specs, str):
        specs = [specs]
    targets = []
    for spec in specs:
        frames = _interpolation(spec)
        if frames is not None:
            targets += frames
            continue
        terms = _sum_terms(spec)
        if terms is not None:
            targets.append(Target(terms[0].layer, Unit(), terms=terms))
            continue
        layer, sep, unit_spec = str(spec).rpartition(":")
        layer = layer if sep else None
        sized = layer if layer is not None else default_layer  # "" is the network's output
        sizes = None
        if "*" in unit_spec and unit_sizes is not None and sized is not None:
            sizes = unit_sizes(sized)
        targets += [Target(layer, unit) for unit in parse_units(unit_spec, sizes)]
    if not targets:
        raise FeatvisError("no targets given; e.g. targets: ['neuron=0-15'] or ['heads.head:class=0-9']")
    return number_copies(targets)


def number_copies(targets: list[Target]) -> list[Target]:
    """``targets`` with each repeat of a target numbered as its next copy (its own key and
    seed), in order: ``[a, b, a]`` gives ``a``, ``b``, ``a#1``."""
    seen: dict[str, int] = {}
    numbered = []
    for target in targets:
        count = seen.get(target.identity, 0)
        seen[target.identity] = count + 1
        numbered.append(replace(target, copy=count))
    return numbered


_INTERPOLATE = re.compile(r"^\s*interpolate\((.*)\)\s*$")


def _split_arguments(text: str) -> list[str]:
    """``a, b, 5`` -> ``["a", "b", "5"]``, leaving commas inside brackets (``neuron=[0,1]``) alone."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return parts + [current.strip()]


def _interpolation(spec: object) -> list[Target] | None:
    """The frames of ``interpolate(A, B, n)``: n targets ``(1 - t) * A + t * B`` for t from 0 to
    1, one set; None for any other specification."""
    match = _INTERPOLATE.match(spec) if isinstance(spec, str) else None
    if match is None:
        return None
    arguments = _split_arguments(match.group(1))
    usage = "interpolate(A, B, n): two units and a number of frames n >= 2, e.g. interpolate(layer:neuron=3, layer:neuron=7, 5)"
    if len(arguments) != 3 or not arguments[2].isdigit() or int(arguments[2]) < 2:
        raise FeatvisError(f"{usage}; got {spec!r}")
    count = int(arguments[2])
    (start,), (end,) = _sum_terms([[1.0, arguments[0]]]), _sum_terms([[1.0, arguments[1]]])
    frames = []
    for i in range(count):
        t = i / (count - 1)
        terms = (Term(1.0 - t, start.layer, start.unit), Term(t, end.layer, end.unit))
        frames.append(Target(start.layer, Unit(), terms=terms, shared=str(spec).strip()))
    return frames


_OPERATOR = re.compile(r"\s+([+-])\s+")
_WEIGHTED = re.compile(r"^\s*(-?\s*[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*(.+)$")


def _sum_terms(spec: object) -> tuple[Term, ...] | None:
    """The terms of a sum specification (a string with `` + ``/`` - `` or a ``w *`` weight, or
    a list of ``[weight, spec]`` pairs); None for a plain one."""
    if isinstance(spec, (list, tuple)):
        pairs = []
        for item in spec:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], str)):
                raise FeatvisError(f"a sum target is a list of [weight, unit] pairs, e.g. [[0.5, 'layer:neuron=3'], "
                                   f"[-1, 'layer:neuron=7']]; got {item!r}")
            pairs.append((float(item[0]), item[1]))
    else:
        text = str(spec).strip()
        pieces = _OPERATOR.split(text)
        if len(pieces) == 1 and not _WEIGHTED.match(text):
            return None
        signs = ["+"] + pieces[1::2]
        pairs = []
        for sign, piece in zip(signs, pieces[0::2]):
            match = _WEIGHTED.match(piece)
            weight, unit_spec = (float(match.group(1).replace(" ", "")), match.group(2)) if match else (1.0, piece)
            if unit_spec.startswith("-") and not match:
                weight, unit_spec = -1.0, unit_spec[1:].strip()
            pairs.append((-weight if sign == "-" else weight, unit_spec))
    terms = []
    for weight, unit_spec in pairs:
        layer, sep, unit_text = unit_spec.strip().rpartition(":")
        units = parse_units(unit_text)
        if len(units) != 1:
            raise FeatvisError(f"a term of a sum names one unit, but {unit_spec!r} names {len(units)}: "
                               "write each term as one unit (no ranges or *)")
        terms.append(Term(weight, layer if sep else None, units[0]))
    return tuple(terms)


def blocks(targets: list[Target]) -> list[list[Target]]:
    """``targets`` cut into runs of consecutive targets of one :attr:`Target.block` (each
    target alone, but a target's images, or an interpolation's frames, together)."""
    runs: list[list[Target]] = []
    for target in targets:
        if runs and runs[-1][0].block == target.block:
            runs[-1].append(target)
        else:
            runs.append([target])
    return runs


@dataclass(frozen=True)
class TargetGroup:
    """Targets optimised together; ``None`` pads a short group. ``index`` -1: padding only."""

    index: int
    targets: tuple[Target | None, ...]
