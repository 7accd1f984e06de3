"""Running top-k and bottom-k of many units over a stream of images: the bookkeeping of dataset
examples (the real images that drive a unit most, and least, beside its visualization).

One pass over a dataset feeds batches of activations ``[B, U]`` (U units, one value per image)
with the images' dataset indices ``[B]``; :class:`RunningExtremes` keeps, per unit, the k largest
and k smallest values seen so far and where they came from, merging each batch in one
``topk`` over ``k + B`` candidates. Memory is O(U x k) whatever the dataset's size; two
accumulators (two shards, or a pass resumed from a saved state) merge into the one a single
pass would give.

Shapes: U units, B images in a batch, k examples kept per unit and side.
"""

from __future__ import annotations

import torch

from lightning_featvis.errors import FeatvisError


def order_keys(values: torch.Tensor, indices: torch.Tensor, largest: bool) -> torch.Tensor:
    """One int64 per value whose order is the value's, ties broken towards the smaller dataset
    index (for the largest and for the smallest alike): one ``topk`` of these keys is exact and
    deterministic, where ``topk`` of the values leaves the order of ties unspecified.

    The high 32 bits are the float32 value's bits made monotone (negative floats' magnitude
    bits flipped), the low 32 the index (its complement when the largest are wanted).
    """
    bits = (values.float() + 0.0).view(torch.int32)  # + 0.0: -0.0 and 0.0 are equal, as values
    monotone = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).long()
    low = (0xFFFFFFFF - indices) if largest else indices
    return (monotone << 32) | low


class RunningExtremes:
    """The k largest and k smallest activations of each of ``units`` units, with their images'
    dataset indices.

    Ties are broken towards the smaller dataset index, so the result does not depend on the
    order or the batching of the stream (nor on how it was sharded). Indices are below 2**32.

    Args:
        units: U, the number of units.
        k: examples kept per unit and side (fewer while fewer images have been seen).
    """

    def __init__(self, units: int, k: int) -> None:
        if units < 1 or k < 1:
            raise FeatvisError(f"dataset examples need at least one unit and k >= 1, got {units} units and k={k}")
        self.units, self.k = units, k
        empty = torch.empty(units, 0)
        self.top_values, self.top_indices = empty.clone(), empty.clone().long()
        self.bottom_values, self.bottom_indices = empty.clone(), empty.clone().long()
        self.seen = 0

    def update(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        """Merge a batch: ``values`` ``[B, U]`` (one activation per image and unit) of the images
        with dataset indices ``indices`` ``[B]``."""
        if values.dim() != 2 or values.shape[1] != self.units or indices.shape != values.shape[:1]:
            raise FeatvisError(f"a batch of activations is [B, {self.units}] with [B] indices, "
                               f"got {tuple(values.shape)} and {tuple(indices.shape)}")
        values = values.detach().float().cpu().T.contiguous()  # [U, B]
        indices = indices.detach().long().cpu().expand(self.units, -1)
        self.top_values, self.top_indices = self._keep(self.top_values, self.top_indices, values, indices, True)
        self.bottom_values, self.bottom_indices = self._keep(self.bottom_values, self.bottom_indices, values, indices,
                                                             False)
        self.seen += values.shape[1]

    def _keep(self, kept: torch.Tensor, kept_indices: torch.Tensor, values: torch.Tensor, indices: torch.Tensor,
              largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = self._best_of_batch(values, indices, largest)  # [U, <= k]
        candidates = torch.cat([kept, values], dim=1)  # [U, <= 2k]
        where = torch.cat([kept_indices, indices], dim=1)
        order = order_keys(candidates, where, largest).topk(min(self.k, candidates.shape[1]), dim=1,
                                                            largest=largest).indices
        return candidates.gather(1, order), where.gather(1, order)

    def _best_of_batch(self, values: torch.Tensor, indices: torch.Tensor, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Each unit's k best of a batch ``[U, B]``, ties towards the smaller index: one plain
        ``topk`` of the values (fast), its choice among values tied at the k-th redone exactly
        for the units that have such ties (rare)."""
        if values.shape[1] <= self.k:
            return values, indices
        best = values.topk(self.k, dim=1, largest=largest)
        boundary = best.values[:, -1:]
        as_good = (values >= boundary) if largest else (values <= boundary)
        chosen_values, chosen = best.values, indices.gather(1, best.indices)
        tied = (as_good.sum(dim=1) > self.k).nonzero().flatten()
        if len(tied):  # more values at least as good as the k-th than k: which ones is the index's call
            keys = order_keys(values[tied], indices[tied], largest)
            pick = keys.topk(self.k, dim=1, largest=largest).indices
            chosen_values[tied] = values[tied].gather(1, pick)
            chosen[tied] = indices[tied].gather(1, pick)
        return chosen_values, chosen

    def merge(self, other: RunningExtremes) -> None:
        """Take in another accumulator's examples (another shard of the same dataset, same units)."""
        if (other.units, other.k) != (self.units, self.k):
            raise FeatvisError(f"cannot merge dataset examples of {other.units} units x k={other.k} "
                               f"into {self.units} units x k={self.k}")
        for largest in (True, False):
            mine = (self.top_values, self.top_indices) if largest else (self.bottom_values, self.bottom_indices)
            theirs = (other.top_values, other.top_indices) if largest else (other.bottom_values, other.bottom_indices)
            kept = self._keep(*mine, *theirs, largest)
            if largest:
                self.top_values, self.top_indices = kept
            else:
                self.bottom_values, self.bottom_indices = kept
        self.seen += other.seen

    def state_dict(self) -> dict:
        """Everything needed to continue the pass later (:meth:`load_state_dict`)."""
        return {"units": self.units, "k": self.k, "seen": self.seen, "top_values": self.top_values,
                "top_indices": self.top_indices, "bottom_values": self.bottom_values,
                "bottom_indices": self.bottom_indices}

    @classmethod
    def from_state_dict(cls, state: dict) -> RunningExtremes:
        """An accumulator that continues where ``state`` (:meth:`state_dict`) left off."""
        extremes = cls(int(state["units"]), int(state["k"]))
        extremes.seen = int(state["seen"])
        for name in ("top_values", "top_indices", "bottom_values", "bottom_indices"):
            setattr(extremes, name, state[name])
        return extremes
