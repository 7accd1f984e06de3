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

import functools
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
        their whole layer, averaged per neuron, and the single-neuron ones among them gathered
        in one index: a sweep of a layer's thousands of neurons costs one selection, not
        thousands (the same means as their own selections')."""
        batch = next(iter(acts.values())).shape[0]
        out = torch.empty(batch, len(self.targets), device=next(iter(acts.values())).device)
        for key, (one, columns, neurons, weights) in self._neuron_groups.items():
            whole = replace(one, unit=Unit(patches=key[1], class_token=key[2]))
            selected = self.objective.select(acts, whole).float()  # [B, t * D], token-major
            width = as_tokens(acts[key[0]], self.objective.network.layout(key[0])).shape[-1]
            means = selected.view(batch, -1, width).mean(dim=1)  # [B, D]
            out[:, columns] = means.index_select(1, neurons.to(means.device)) * weights.to(means.device)
        for u in self._others:
            target = self.targets[u]
            parts = self._parts(target)
            if len(parts) == 1 and _neurons_of_tokens(parts[0][1]):  # several or all neurons: their mean
                weight, one = parts[0]
                every = self.objective.select(acts, replace(one, unit=replace(one.unit, neurons=None))).float()
                width = as_tokens(acts[one.layer], self.objective.network.layout(one.layer)).shape[-1]
                chosen = every.view(batch, -1, width)
                if one.unit.neurons is not None:
                    chosen = chosen[..., list(one.unit.neurons)]
                out[:, u] = weight * chosen.mean(dim=(1, 2))
            else:
                out[:, u] = sum(weight * self.objective.select(acts, part).float().mean(dim=1) for weight, part in parts)
        return out

    @functools.cached_property
    def _neuron_groups(self) -> dict[tuple, tuple[Target, list[int], torch.Tensor, torch.Tensor]]:
        """The single-neuron targets by (layer, patches, class token): one of them, their
        columns, neurons ``[n]`` and weights ``[n]``."""
        groups: dict[tuple, list] = {}
        for u, target in enumerate(self.targets):
            parts = self._parts(target)
            if len(parts) == 1 and _neurons_of_tokens(parts[0][1]) and parts[0][1].unit.neurons is not None \
                    and len(parts[0][1].unit.neurons) == 1:
                weight, one = parts[0]
                entry = groups.setdefault((one.layer, one.unit.patches, one.unit.class_token), [one, [], [], []])
                entry[1].append(u)
                entry[2].append(one.unit.neurons[0])
                entry[3].append(weight)
        return {key: (one, columns, torch.tensor(neurons), torch.tensor(weights, dtype=torch.float32))
                for key, (one, columns, neurons, weights) in groups.items()}

    @functools.cached_property
    def _others(self) -> list[int]:
        """The targets :attr:`_neuron_groups` does not hold."""
        grouped = {u for _, columns, _, _ in self._neuron_groups.values() for u in columns}
        return [u for u in range(len(self.targets)) if u not in grouped]

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
