"""Dataset examples: the real images that drive each target's unit most and least, read the way a
render reads the unit.

:class:`UnitReader` gives, for a batch of images, every target's activation (the value a render
reports for it: the mean of the unit's selected activations, a sum's weighted sum) and, for
units of token layers, its per-patch map; :func:`find_examples` streams images through it once
(under ``inference_mode``, the forward stopping at the deepest target layer) and keeps each
target's top-k and bottom-k with :class:`~lightning_featvis.microscope.extremes.RunningExtremes`.

Shapes: B images, U targets, P patches, S the model's input side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import torch

from lightning_featvis.microscope.extremes import RunningExtremes
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.targets import Target
from lightning_featvis.units import Unit, as_tokens


class UnitReader:
    """Reads ``targets`` of ``objective``'s frozen network from images.

    Args:
        objective: a visualization objective (its network is built here; its ``select`` is
            used, so directions and log-softmax logits read as they render).
        targets: the targets, layers resolved (e.g. a run's ``plan.targets``).
    """

    def __init__(self, objective: VisualizationObjective, targets: Sequence[Target]) -> None:
        self.objective, self.targets = objective, list(targets)
        objective.build_network()
        self.layers = sorted({part.layer for t in self.targets for part in t.parts})

    def _parts(self, target: Target) -> list[tuple[float, Target]]:
        return [(term.weight, term.target) for term in target.parts]

    def activations(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The targets' layers' outputs for ``images`` ``[B, 3, S, S]`` in [0, 1]."""
        with torch.inference_mode():
            return self.objective.activations(images, self.layers)

    def values(self, images: torch.Tensor) -> torch.Tensor:
        """Each target's activation on each image, ``[B, U]``."""
        acts = self.activations(images)
        with torch.inference_mode():
            return self.values_of(acts)

    def values_of(self, acts: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each target's activation ``[B, U]`` from its layers' outputs ``acts`` (:meth:`activations`).

        Units that are neurons of tokens (no direction, no head) are read from one selection of
        their whole layer, averaged per neuron: a sweep of a layer's thousands of neurons costs
        one selection, not thousands (the same mean as their own selection's)."""
        columns: list[torch.Tensor | None] = [None] * len(self.targets)
        per_neuron: dict[tuple, torch.Tensor] = {}  # (layer, patches, class token) -> [B, D]
        for u, target in enumerate(self.targets):
            parts = self._parts(target)
            if len(parts) == 1 and _neurons_of_tokens(parts[0][1]):
                one = parts[0][1]
                key = (one.layer, one.unit.patches, one.unit.class_token)
                if key not in per_neuron:
                    whole = replace(one, unit=Unit(patches=one.unit.patches, class_token=one.unit.class_token))
                    selected = self.objective.select(acts, whole).float()  # [B, t * D], token-major
                    width = as_tokens(acts[one.layer], self.objective.network.layout(one.layer)).shape[-1]
                    per_neuron[key] = selected.view(selected.shape[0], -1, width).mean(dim=1)
                means = per_neuron[key]
                neurons = one.unit.neurons
                columns[u] = parts[0][0] * (means.mean(dim=1) if neurons is None else means[:, list(neurons)].mean(dim=1))
            else:
                columns[u] = sum(weight * self.objective.select(acts, one).float().mean(dim=1) for weight, one in parts)
        return torch.stack(columns, dim=1)

    def heatmap(self, images: torch.Tensor, target: Target) -> torch.Tensor | None:
        """The target's unit at every patch, ``[B, P]`` (its neurons' mean, or its direction's
        projection, per patch); None for a unit of a layer without patches (logits)."""
        acts = self.activations(images)
        with torch.inference_mode():
            return self.heatmap_of(acts, target)

    def heatmap_of(self, acts: dict[str, torch.Tensor], target: Target) -> torch.Tensor | None:
        """:meth:`heatmap` from the target's layers' outputs ``acts`` (:meth:`activations`)."""
        maps = []
        for weight, one in self._parts(target):
            layout = self.objective.network.layout(one.layer)
            if layout.kind == "logits":
                return None
            every_patch = replace(one, unit=replace(one.unit, patches=None, class_token=False))
            patches = as_tokens(acts[one.layer], layout).shape[1] - layout.prefix_tokens
            # select flattens token-major: [B, P * n] -> each patch's n selected values
            selected = self.objective.select(acts, every_patch).float()
            maps.append(weight * selected.view(selected.shape[0], patches, -1).mean(dim=-1))
        if len({m.shape for m in maps}) != 1:
            return None  # a sum across layers of different grids has no one map
        return sum(maps)


def _neurons_of_tokens(target: Target) -> bool:
    """Whether ``target``'s unit is neurons (or all) of some tokens: no direction, no head, no key."""
    unit = target.unit
    return unit.direction is None and unit.heads is None and not unit.is_pattern


def find_examples(reader: UnitReader, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], k: int = 9,
                  extremes: RunningExtremes | None = None) -> RunningExtremes:
    """Stream ``batches`` of ``(images [B, 3, S, S] in [0, 1], dataset indices [B])`` through
    ``reader`` once; return every target's top-k and bottom-k (continuing ``extremes``, a
    resumed pass, when given)."""
    extremes = extremes or RunningExtremes(len(reader.targets), k)
    for images, indices in batches:
        extremes.update(reader.values(images), indices)
    return extremes
