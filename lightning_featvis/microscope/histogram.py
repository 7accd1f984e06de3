"""Running histograms of many units' activations over a stream of images, exact whatever the
batching, sharding or resume: the histogram beside each unit in the gallery.

Each unit's bins have a width that is a power of two, ``2**e``, and sit on the global grid
``floor(value / 2**e)``: the count in a bin is exactly the number of values that fall in it. A
unit keeps at most ``bins`` bins; when its values spread wider, its width doubles (two
neighbouring bins merge into one, which is again exact on the coarser grid). The width a unit
ends with is the smallest power of two whose grid holds its range (its minimum to its maximum)
in ``bins`` bins, which depends only on that range: so two shards, or a pass resumed from a
saved state, merge into the histogram a single pass gives.

Shapes: U units, B images in a batch, K bins.
"""

from __future__ import annotations

import torch

from lightning_featvis.errors import FeatvisError

#: the narrowest bin (2**-24): activations closer than this share a bin
MIN_EXPONENT = -24


class RunningHistogram:
    """Histograms of ``units`` units, at most ``bins`` bins each.

    Attributes:
        counts: ``[U, K]`` int64, unit u's bin j counting values in
            ``[(first[u] + j) * 2**exponent[u], (first[u] + j + 1) * 2**exponent[u])``.
        first: ``[U]`` int64, the grid index of each unit's first bin.
        exponent: ``[U]`` int64, each unit's bin width as a power of two.
        low, high: ``[U]`` the smallest and largest value seen (``+inf``/``-inf`` before any).
    """

    def __init__(self, units: int, bins: int = 64) -> None:
        if units < 1 or bins < 2:
            raise FeatvisError(f"a histogram needs at least one unit and 2 bins, got {units} units and {bins} bins")
        self.units, self.bins = units, bins
        self.counts = torch.zeros(units, bins, dtype=torch.long)
        self.first = torch.zeros(units, dtype=torch.long)
        self.exponent = torch.full((units,), MIN_EXPONENT, dtype=torch.long)
        self.low = torch.full((units,), float("inf"), dtype=torch.float64)
        self.high = torch.full((units,), float("-inf"), dtype=torch.float64)

    @property
    def seen(self) -> int:
        """How many values each unit has counted."""
        return int(self.counts[0].sum())

    def edges(self, unit: int) -> torch.Tensor:
        """Unit ``unit``'s bin edges ``[K + 1]``."""
        width = 2.0 ** int(self.exponent[unit])
        return (int(self.first[unit]) + torch.arange(self.bins + 1, dtype=torch.float64)) * width

    def _grid(self, values: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
        """Grid index ``floor(values / 2**exponent)`` (exponent broadcast over the units' axis):
        a product with a power of two, exact (and much faster than ``ldexp``)."""
        scale = torch.ldexp(torch.ones_like(exponent, dtype=values.dtype), -exponent.to(values.dtype))
        return (values * scale).floor_().long()

    def _fitting_exponent(self, low: torch.Tensor, high: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The smallest exponent, from ``start`` up, at which each unit's range [low, high] takes
        at most K bins (a unit's fewest, as the span in bins only shrinks as bins widen)."""
        seen = torch.isfinite(low)
        low, high = low.where(seen, 0.0), high.where(seen, 0.0)
        # below log2(range / K) the span is more than K bins: start the search there
        floor = torch.log2(((high - low) / self.bins).clamp_min(2.0 ** MIN_EXPONENT)).ceil().long() - 1
        exponent = torch.maximum(start, floor.where(seen, start))
        while True:
            wide = seen & (self._grid(high, exponent) - self._grid(low, exponent) + 1 > self.bins)
            if not wide.any():
                return exponent
            exponent = exponent + wide.long()

    def _rebin(self, counts: torch.Tensor, first: torch.Tensor, exponent: torch.Tensor, new_first: torch.Tensor,
               new_exponent: torch.Tensor) -> torch.Tensor:
        """``counts`` (bins from ``first`` at ``exponent``) on the coarser grid ``new_*``."""
        grid = first[:, None] + torch.arange(self.bins)[None]  # [U, K] global index of each old bin
        coarse = torch.div(grid, 2 ** (new_exponent - exponent)[:, None], rounding_mode="floor") - new_first[:, None]
        occupied = counts > 0
        out = torch.zeros_like(counts)
        return out.scatter_add_(1, coarse.where(occupied, 0).clamp(0, self.bins - 1), counts.where(occupied, 0))

    def _widen(self, low: torch.Tensor, high: torch.Tensor, start: torch.Tensor | None = None) -> None:
        """Make room for values in [low, high] (per unit), bins at least ``2**start`` wide,
        rebinning what was counted."""
        low, high = torch.minimum(self.low, low), torch.maximum(self.high, high)
        exponent = self._fitting_exponent(low, high, self.exponent if start is None else start)
        first = self._grid(low.where(torch.isfinite(low), 0.0), exponent)
        self.counts = self._rebin(self.counts, self.first, self.exponent, first, exponent)
        self.first, self.exponent, self.low, self.high = first, exponent, low, high

    def update(self, values: torch.Tensor) -> None:
        """Count a batch: ``values`` ``[B, U]``, one activation per image and unit (finite)."""
        if values.dim() != 2 or values.shape[1] != self.units:
            raise FeatvisError(f"a batch of activations is [B, {self.units}], got {tuple(values.shape)}")
        values = values.detach().float().cpu().T.contiguous()  # [U, B]; scaling by 2**-e and floor are exact in float32
        low, high = values.min(dim=1).values.double(), values.max(dim=1).values.double()
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise FeatvisError("an activation is not finite (NaN or inf): the model's output on a real image "
                               "overflowed; try precision 32")
        if (low < self.low).any() or (high > self.high).any():  # after the first batches, rarely
            self._widen(low, high)
        where = self._grid(values, self.exponent[:, None]) - self.first[:, None]
        self.counts.scatter_add_(1, where, torch.ones_like(where))

    def merge(self, other: RunningHistogram) -> None:
        """Add another histogram of the same units (another shard of the dataset)."""
        if (other.units, other.bins) != (self.units, self.bins):
            raise FeatvisError(f"cannot merge histograms of {other.units} units x {other.bins} bins "
                               f"into {self.units} units x {self.bins} bins")
        # never finer than either: both sets of counts must land exactly on the common grid
        self._widen(other.low, other.high, torch.maximum(self.exponent, other.exponent))
        self.counts += self._rebin(other.counts, other.first, other.exponent, self.first, self.exponent)

    def state_dict(self) -> dict:
        """Everything needed to continue counting later (:meth:`from_state_dict`)."""
        return {"units": self.units, "bins": self.bins, "counts": self.counts, "first": self.first,
                "exponent": self.exponent, "low": self.low, "high": self.high}

    @classmethod
    def from_state_dict(cls, state: dict) -> RunningHistogram:
        """A histogram that continues where ``state`` (:meth:`state_dict`) left off."""
        histogram = cls(int(state["units"]), int(state["bins"]))
        for name in ("counts", "first", "exponent", "low", "high"):
            setattr(histogram, name, state[name])
        return histogram
