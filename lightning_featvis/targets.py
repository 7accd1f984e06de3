"""Targets: which units a run visualises (a layer and a unit, and for text runs a sentence),
parsed from specifications such as ``heads.head:class=0-9``, and the groups they are cut into."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lightning_featvis.errors import FeatvisError
from lightning_featvis.units import Unit, parse_units


@dataclass(frozen=True)
class Target:
    """One input to generate: a unit of a layer (``layer=None``: the objective's default) and,
    for text runs, which of the run's sentences it reconstructs (``sentence``, an index into
    :attr:`SentenceTargets.sentences`)."""

    layer: str | None
    unit: Unit
    sentence: int | None = None

    @property
    def key(self) -> str:
        """Stable identity (seeds the canvas and jitter), e.g. ``encoder.layers.encoder_layer_3:neuron5``
        or, with a sentence, ``transformer.h.0:all@2``."""
        suffix = "" if self.sentence is None else f"@{self.sentence}"
        return f"{self.layer or ''}:{self.unit.name}{suffix}"

    @property
    def file_stem(self) -> str:
        """File name without extension, e.g. ``encoder.layers.encoder_layer_3__neuron5`` (with a
        sentence: ``transformer.h.0__all__sentence2``)."""
        suffix = "" if self.sentence is None else f"__sentence{self.sentence}"
        return f"{self.layer or 'output'}__{self.unit.name}{suffix}"


def parse_targets(
    specs: str | list[str],
    unit_sizes: Callable[[str], dict[str, int]] | None = None,
    default_layer: str | None = None,
) -> list[Target]:
    """Expand target specifications ``[layer:]unit`` into targets.

    ``"heads.head:class=0-9"`` gives ten targets; ``"neuron=0-15"`` gives sixteen on the
    objective's default layer. See :mod:`lightning_featvis.units` for the unit grammar.

    Args:
        unit_sizes: a layer's sizes for ``*`` (``neuron=*``: every neuron), e.g.
            :meth:`VisualizationObjective.unit_sizes`; asked only for specs that use ``*``.
        default_layer: the layer of specs that name none, for their ``*``.
    """
    if isinstance(specs, str):
        specs = [specs]
    targets = []
    for spec in specs:
        layer, sep, unit_spec = str(spec).rpartition(":")
        layer = layer if sep else None
        sized = layer if layer is not None else default_layer  # "" is the network's output
        sizes = None
        if "*" in unit_spec and unit_sizes is not None and sized is not None:
            sizes = unit_sizes(sized)
        targets += [Target(layer, unit) for unit in parse_units(unit_spec, sizes)]
    if not targets:
        raise FeatvisError("no targets given; e.g. targets: ['neuron=0-15'] or ['heads.head:class=0-9']")
    keys = [t.key for t in targets]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise FeatvisError(f"targets repeat: {', '.join(dup)}")
    return targets


@dataclass(frozen=True)
class TargetGroup:
    """Targets optimised together; ``None`` pads a short group. ``index`` -1: padding only."""

    index: int
    targets: tuple[Target | None, ...]
