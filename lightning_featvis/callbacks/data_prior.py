"""Data prior: a Gaussian fitted to the training digits, penalising images unlike any digit."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_featvis.callbacks.roles import Penalty
from lightning_featvis.errors import FeatvisError

#: the side of the images the training digits are loaded at (the digits models' input size)
_DATA_SIZE = 32


class GaussianPrior(Penalty):
    """Adds ``weight * d^2(x) / D`` to every target's loss, with ``d^2`` the squared Mahalanobis
    distance of the view, seen at low resolution, from a Gaussian fitted to the training digits.

    The model-sized view ``[G, C, s, s]`` is averaged over its channels and area-averaged to
    ``x`` ``[G, D]`` with ``D = resolution ** 2`` (8x8: the digits' native grid, so the prior
    describes what the data can vary, strokes and their places, not pixel detail it never had).
    With ``mu`` ``[D]`` and ``Sigma`` ``[D, D]`` the mean and the shrunk covariance of the
    training digits reduced the same way,
    ``d^2(x) = (x - mu)^T Sigma^-1 (x - mu)``, i.e. ``-2 log N(x; mu, Sigma)`` up to a constant.
    Divided by ``D`` it is about 1 for a real digit whatever the resolution.

    The statistics come only from the training split the digits models were trained on
    (:func:`lightning_featvis.digits_data.digits_split` with ``val_fraction`` and
    ``split_seed``), never from held-out digits or from the judges. They are fitted lazily on
    the first :meth:`penalty` (or by calling :meth:`fit` with other images).

    Args:
        weight: penalty weight (per target; ``>= 0``).
        resolution: side of the grid the prior lives on (``1..32``; 8: the digits' own).
        shrinkage: ``lambda`` in ``Sigma = (1 - lambda) C + lambda * mean(diag C) * I``, with
            ``C`` the sample covariance (``0 < lambda <= 1``). The digits' border pixels never
            vary, so ``C`` alone is singular; shrinkage makes it invertible and bounds how much
            any one direction can cost.
        val_fraction: the held-out share of the training split (as the models were trained).
        split_seed: the seed of that split (as the models were trained).
    """

    def __init__(
        self,
        weight: float = 0.1,
        resolution: int = 8,
        shrinkage: float = 0.1,
        val_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        if not weight >= 0:  # also rejects NaN
            raise FeatvisError(f"GaussianPrior weight must be >= 0, got {weight}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 1 <= resolution <= _DATA_SIZE:
            raise FeatvisError(f"GaussianPrior resolution must be an integer in 1..{_DATA_SIZE}, got {resolution!r}")
        if not 0 < shrinkage <= 1:
            raise FeatvisError(
                f"GaussianPrior shrinkage must be in (0, 1] (0 leaves the digits' covariance singular), got {shrinkage}"
            )
        if not 0 < val_fraction < 1:
            raise FeatvisError(f"GaussianPrior val_fraction must be in (0, 1), got {val_fraction}")
        self.weight, self.resolution, self.shrinkage = weight, resolution, shrinkage
        self.val_fraction, self.split_seed = val_fraction, split_seed
        # float64 on the CPU, set by fit(); _cache holds copies per (device, dtype)
        self.mean: torch.Tensor | None = None  # [D]
        self.precision: torch.Tensor | None = None  # [D, D], the inverse of the shrunk covariance
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def dims(self) -> int:
        """``D``, the number of values the prior describes."""
        return self.resolution**2

    def reduce(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[N, C, H, W]`` -> their grey, area-averaged ``[N, D]`` (channel mean, then
        the mean of each of the ``resolution x resolution`` cells)."""
        if images.dim() != 4:
            raise FeatvisError(f"GaussianPrior needs images [N, C, H, W], got shape {tuple(images.shape)}")
        grey = images.mean(dim=1, keepdim=True)
        # adaptive average pooling is area averaging (exact cells when the side divides evenly)
        return F.adaptive_avg_pool2d(grey, self.resolution).flatten(1)

    def fit(self, images: torch.Tensor) -> GaussianPrior:
        """Fit ``mu`` and the shrunk ``Sigma`` to images ``[N, C, H, W]`` in [0, 1] and invert it
        (in float64: the digits' covariance spans several orders of magnitude)."""
        x = self.reduce(images.detach().to("cpu", torch.float64))
        if x.shape[0] < 2:
            raise FeatvisError(f"GaussianPrior needs at least 2 images to fit a covariance, got {x.shape[0]}")
        cov = torch.atleast_2d(torch.cov(x.T))
        # shrink towards a multiple of the identity with the same total variance (Ledoit-Wolf's target)
        ridge = cov.diagonal().mean().clamp_min(1e-12)
        shrunk = (1 - self.shrinkage) * cov + self.shrinkage * ridge * torch.eye(self.dims, dtype=torch.float64)
        self.mean = x.mean(dim=0)
        self.precision = torch.linalg.inv(shrunk)
        self.precision = (self.precision + self.precision.T) / 2  # exact symmetry after rounding
        self._cache.clear()
        return self

    def fit_training_digits(self) -> GaussianPrior:
        """Fit to the training split of the digits (only: the held-out split stays unseen)."""
        from lightning_featvis.digits_data import digits_split

        split = digits_split(_DATA_SIZE, self.val_fraction, self.split_seed)
        return self.fit(split.train_images)

    def statistics(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu`` ``[D]`` and ``Sigma^-1`` ``[D, D]`` on ``device`` in ``dtype`` (fitted and moved
        once, then cached: the penalty runs every step)."""
        if self.mean is None or self.precision is None:
            self.fit_training_digits()
        key = (torch.device(device), dtype)
        if key not in self._cache:
            self._cache[key] = (self.mean.to(device, dtype), self.precision.to(device, dtype))
        return self._cache[key]

    def distance(self, view: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distance per image ``[G]`` of views ``[G, C, s, s]`` (differentiable)."""
        x = self.reduce(view)
        mean, precision = self.statistics(x.device, x.dtype)
        centred = x - mean
        return torch.einsum("gi,ij,gj->g", centred, precision, centred)

    def penalty(self, view: torch.Tensor, image: torch.Tensor, step: int) -> torch.Tensor:
        return self.weight * self.distance(view) / self.dims
