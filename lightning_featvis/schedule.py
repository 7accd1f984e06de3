"""Octaves: the phases of a render, each with its canvas size, step count and schedules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Octave:
    """One phase of a render.

    Attributes:
        steps: optimizer steps in this octave.
        size: canvas side in pixels (``None``: the model's input size). A canvas larger than
            the model input is seen through a model-sized window (see ``PositionalJitter``).
        lr: learning rate going linearly from ``lr[0]`` to ``lr[1]`` over the octave
            (``None``: the optimizer's own).
    """

    steps: int
    size: int | None = None
    lr: tuple[float, float] | None = None


def linear(start: float, end: float, step: int, steps: int) -> float:
    """Value at ``step`` (0-based) of a linear ramp from ``start`` to ``end`` over ``steps``."""
    return start + (end - start) * step / max(steps - 1, 1)


def locate(octaves: list[Octave], step: int) -> tuple[int, int]:
    """``(octave index, step within that octave)`` of a step counted from the group's start."""
    for index, octave in enumerate(octaves):
        if step < octave.steps:
            return index, step
        step -= octave.steps
    raise IndexError(f"step beyond the last octave ({sum(o.steps for o in octaves)} steps)")
