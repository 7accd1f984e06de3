"""Octaves: the phases of a render, each with its canvas size, step count and schedules."""

from __future__ import annotations

from dataclasses import dataclass

from lightning_featvis.errors import FeatvisError


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

    def check(self) -> None:
        """Refuse an octave that cannot run: fewer than one step, or a learning rate that is
        not positive (gradient descent would climb the loss, or stand still; a ramp may end
        at 0, as a decay does)."""
        if self.steps < 1:
            raise FeatvisError(f"every octave needs steps >= 1, got {self}")
        if self.lr is not None and (len(self.lr) != 2 or not (self.lr[0] > 0 and self.lr[1] >= 0)):
            raise FeatvisError(f"an octave's lr is [start, end], start positive and end not negative; "
                               f"got lr={list(self.lr)} in {self}")


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
