"""Diversity: several images of one target that differ from each other (Lucid's ``diversity``).

``images_per_target: k`` renders k copies of each target in one group; ``diversity: w`` adds,
to each copy's loss, w times the summed cosine similarity of its Gram matrix with the other
copies' at one layer (so the sum over the k copies is Lucid's penalty: the pairwise Gram
cosines divided by k). By default the weight falls from w to 0 over the first half of the
steps (``diversity_until``): a constant weight trades activation for difference to the end. The Gram matrix of a layer output viewed as tokens ``[T, D]`` is
``[D, D]``: which features appear together, wherever they are, so the copies are pushed towards
different feature combinations, not merely shifted.

Shapes: G targets in a group, c views of each (an augmentation ensemble; 1 without one),
T tokens, D features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout
from lightning_featvis.targets import Target
from lightning_featvis.units import as_tokens


@dataclass(frozen=True)
class Diversity:
    """How strongly a target's images are pushed apart, and where.

    Attributes:
        weight: w, the penalty's weight (0: independent images).
        layer: the layer whose Gram matrices are compared (None: each target's own layer, for a
            sum its first term's).
        until: the share of the render's steps the penalty acts in, its weight falling linearly
            from w to 0 across it: the images part early, then each climbs its own hill (None:
            w throughout, as Lucid; measured in ``benchmarks/diversity.py``).
    """

    weight: float = 0.0
    layer: str | None = None
    until: float | None = 0.5

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise FeatvisError(f"diversity must be a weight >= 0, got {self.weight}")
        if self.until is not None and not 0 < self.until <= 1:
            raise FeatvisError(f"diversity_until must be a share of the steps in (0, 1], or null, got {self.until}")

    def weight_at(self, progress: float) -> float:
        """The penalty's weight ``progress`` (step / steps, in [0, 1)) into the render."""
        if self.until is None:
            return self.weight
        return self.weight * max(0.0, 1.0 - progress / self.until)

    def layer_of(self, target: Target) -> str:
        """The layer ``target``'s copies are compared in."""
        return self.layer if self.layer is not None else target.parts[0].layer

    def layers(self, targets: tuple[Target | None, ...], progress: float = 0.0) -> set[str]:
        """The layers a group's penalty reads ``progress`` (step / steps) into the render: none
        when its weight is 0 by then, or no target has another image in the group (so the
        forward pass need not reach them)."""
        if self.weight_at(progress) == 0:
            return set()
        return {self.layer_of(t) for t in targets if t is not None and _has_peer(t, targets)}

    def penalty(self, acts: dict[str, torch.Tensor], layouts: dict[str, Layout],
                targets: tuple[Target | None, ...], progress: float = 0.0) -> torch.Tensor:
        """Per-slot penalty ``[G]`` from the group's activations at the :meth:`layers` it reads
        (``acts[layer]``: ``[G * c, ...]``, target-major; ``layouts``: those layers' layouts),
        ``progress`` (step / steps) into the render; 0 for padding and for targets alone in the
        group."""
        weight = self.weight_at(progress)
        out = torch.zeros(len(targets), device=next(iter(acts.values())).device)
        for layer in layouts:
            slots = [i for i, t in enumerate(targets) if t is not None and self.layer_of(t) == layer and _has_peer(t, targets)]
            grams = normalised_grams(acts[layer], layouts[layer], len(targets))[slots]  # [n, D*D]
            cosine = grams @ grams.T
            same = torch.tensor([[targets[i].identity == targets[j].identity and i != j for j in slots] for i in slots],
                                device=cosine.device)
            copies = same.sum(dim=1).float() + 1  # k: the slot's images of its target
            out[slots] = weight * (cosine * same).sum(dim=1) / copies
        return out


#: independent images (a run without a plan, or with ``diversity: 0``)
NO_DIVERSITY = Diversity()


def _has_peer(target: Target, targets: tuple[Target | None, ...]) -> bool:
    return sum(t is not None and t.identity == target.identity for t in targets) > 1


def normalised_grams(acts: torch.Tensor, layout: Layout, groups: int) -> torch.Tensor:
    """Each target's Gram matrix of ``acts`` ``[G * c, ...]`` viewed as tokens ``[T, D]``,
    averaged over its c views, flattened and scaled to unit length: ``[G, D * D]``."""
    tokens = as_tokens(acts, layout).float()
    grams = tokens.transpose(1, 2) @ tokens  # [G * c, D, D]
    grams = grams.reshape(groups, -1, grams.shape[1] * grams.shape[2]).mean(dim=1)
    return torch.nn.functional.normalize(grams, dim=1, eps=1e-10)


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """The mean cosine similarity of every pair of rows of ``features`` ``[k, ...]`` (each row
    flattened): 1 for identical images' features, lower as they differ."""
    flat = torch.nn.functional.normalize(features.flatten(1).float(), dim=1)
    cosine = flat @ flat.T
    k = flat.shape[0]
    return float((cosine.sum() - cosine.diagonal().sum()) / (k * (k - 1)))
