"""Objective algebra in Python: units as values that add, subtract and scale, as Lucent's
objectives do.

``unit("encoder.layers.encoder_layer_1:neuron=3") - 0.5 * unit("encoder.layers.encoder_layer_3:neuron=7")``
is the target a config writes as ``"encoder.layers.encoder_layer_1:neuron=3 - 0.5 * encoder.layers.encoder_layer_3:neuron=7"``
(or its list form ``[[1, "...neuron=3"], [-0.5, "...neuron=7"]]``, which :attr:`UnitSum.spec`
gives): :func:`~lightning_featvis.render` takes either, and the run is the same.
:func:`interpolate` gives an interpolation between two units.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

from lightning_featvis.errors import FeatvisError
from lightning_featvis.units import parse_units


@dataclass(frozen=True)
class UnitSum:
    """A weighted sum of units, ``((weight, "layer:unit"), ...)``; one unit is a sum of one term."""

    terms: tuple[tuple[float, str], ...]

    @property
    def spec(self) -> str | list[list]:
        """The target as a config holds it: ``"layer:unit"`` for one unit of weight 1, else the
        list form ``[[weight, "layer:unit"], ...]``."""
        if len(self.terms) == 1 and self.terms[0][0] == 1.0:
            return self.terms[0][1]
        return [[weight, spec] for weight, spec in self.terms]

    def __add__(self, other: UnitSum) -> UnitSum:
        if not isinstance(other, UnitSum):
            return NotImplemented
        return UnitSum(self.terms + other.terms)

    def __sub__(self, other: UnitSum) -> UnitSum:
        if not isinstance(other, UnitSum):
            return NotImplemented
        return self + (-other)

    def __neg__(self) -> UnitSum:
        return self * -1.0

    def __mul__(self, weight: Real) -> UnitSum:
        if not isinstance(weight, Real):
            return NotImplemented
        return UnitSum(tuple((float(weight) * w, spec) for w, spec in self.terms))

    __rmul__ = __mul__

    def __truediv__(self, divisor: Real) -> UnitSum:
        if not isinstance(divisor, Real):
            return NotImplemented
        return self * (1.0 / float(divisor))

    def __str__(self) -> str:
        return " + ".join(f"{w:g} * {spec}" for w, spec in self.terms)


def unit(spec: str) -> UnitSum:
    """One unit as a value: ``unit("encoder.layers.encoder_layer_3:neuron=7")``. It names one
    unit (no ranges or ``*``), checked here; the layer is checked when the run starts."""
    _, _, unit_text = str(spec).rpartition(":")
    count = len(parse_units(unit_text))
    if count != 1:
        raise FeatvisError(f"unit({spec!r}) names {count} units; a value is one unit (no ranges or *)")
    return UnitSum(((1.0, str(spec)),))


def interpolate(start: UnitSum | str, end: UnitSum | str, frames: int) -> str:
    """``frames`` images from ``start`` to ``end``: frame i drives ``(1 - t) * start + t * end``,
    t = i / (frames - 1), and the frames share part of their parameters (Lucid's
    ``channel_interpolate``); the target a config writes as ``"interpolate(start, end, frames)"``."""
    units = []
    for value in (start, end):
        if isinstance(value, UnitSum):
            if len(value.terms) != 1 or value.terms[0][0] != 1.0:
                raise FeatvisError(f"interpolate() runs between two units, not sums; got {value}")
            value = value.terms[0][1]
        units.append(str(value))
    return f"interpolate({units[0]}, {units[1]}, {int(frames)})"


def as_spec(target: object) -> object:
    """A target as a config holds it: :class:`UnitSum` values become their :attr:`~UnitSum.spec`."""
    return target.spec if isinstance(target, UnitSum) else target
