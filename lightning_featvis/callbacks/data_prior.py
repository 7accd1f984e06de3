"""Data prior: a Gaussian fitted to real images (any image source), penalising images unlike them."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from lightning_featvis.callbacks.image_writer import logger_dir
from lightning_featvis.callbacks.roles import Penalty
from lightning_featvis.data_statistics import sample_images
from lightning_featvis.errors import FeatvisError, WriteError
from lightning_featvis.files import atomic_write
from lightning_featvis.params.color import rgb_to_decorrelated
from lightning_featvis.params.fourier import radial_frequency

#: the file a run keeps its fitted prior in, in its log folder
CACHE_FILE = "data_prior.pt"
#: fitted priors of this process by fingerprint: a benchmark's many runs fit each once
_FITTED: dict[str, dict[str, torch.Tensor]] = {}


def _gaussian(x: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[D]`` and inverse shrunk covariance ``[D, D]`` of samples ``x`` ``[N, D]`` (float64)."""
    cov = torch.atleast_2d(torch.cov(x.T))
    # shrink towards a multiple of the identity with the same total variance (Ledoit-Wolf's target)
    ridge = cov.diagonal().mean().clamp_min(1e-12)
    shrunk = (1 - shrinkage) * cov + shrinkage * ridge * torch.eye(x.shape[1], dtype=torch.float64)
    precision = torch.linalg.inv(shrunk)
    return x.mean(dim=0), (precision + precision.T) / 2  # exact symmetry after rounding


def _mahalanobis(x: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    centred = x - mean
    return torch.einsum("gi,ij,gj->g", centred, precision, centred)


class GaussianPrior(Penalty):
    """Adds ``weight * (d_p^2(x) / D_p + d_b^2(x) / D_b)`` to every target's loss: the squared
    Mahalanobis distances of the view from Gaussians fitted to real images, each divided by its
    dimension (so about 1 for a real image whatever the resolution).

    - **pixels** ``d_p``: the model-sized view ``[G, C, s, s]``, in colour or grey (the channel
      mean), area-averaged to ``resolution x resolution``: ``D_p = C' * resolution ** 2`` values
      (C' = 3 or 1). At a coarse grid the prior describes what the data varies, shapes and their
      places and colours, not pixel detail.
    - **frequency bands** ``d_b`` (``bands > 0``): the log energy of each colour channel
      (decorrelated, as :class:`~lightning_featvis.params.FourierImage` stores it; grey: one) in
      ``bands`` octaves of spatial frequency, the finest first (``(1/4, 1/2]`` cycles per pixel,
      then ``(1/8, 1/4]``, ...): ``D_b = C' * bands`` values. This is the part that scales: it
      asks for the data's amount of texture at each scale, whatever the resolution, where a
      Gaussian of pixels at a coarse grid says nothing about detail.

    With ``mu`` and ``Sigma`` the mean and shrunk covariance of the same values over the real
    images, ``d^2(x) = (x - mu)^T Sigma^-1 (x - mu)``, i.e. ``-2 log N(x; mu, Sigma)`` up to a
    constant.

    The real images come from ``data``, an image source
    (:func:`~lightning_featvis.image_sources.image_source`: ``digits:train``, ``photos:train``, a
    folder, a Hugging Face dataset), read at the model's input side; by default the data the
    network declares it was trained on (its adapter's ``training_data``: the zoos' training
    splits, never their held-out images). The prior is fitted when the run starts and kept in
    the run's log folder (``data_prior.pt``), which a resumed run reads instead of fitting
    again; :meth:`fit` fits it to images you give.

    Args:
        weight: penalty weight (per target; ``>= 0``).
        data: the image source; ``None``: the network's ``training_data``.
        resolution: side of the pixel grid (``>= 1``, at most the model's input side; 8 for the
            digits: their own grid).
        colour: model colour (3 channels) or grey (their mean); ``None``: colour when the data
            has colour.
        bands: frequency octaves of the band-energy part (0: pixels only).
        shrinkage: ``lambda`` in ``Sigma = (1 - lambda) C + lambda * mean(diag C) * I``, with
            ``C`` the sample covariance (``0 < lambda <= 1``). Pixels that never vary (the
            digits' border) make ``C`` singular; shrinkage makes it invertible and bounds how
            much any one direction can cost.
        max_images: at most this many images of ``data`` are read (evenly spread over it).
    """

    def __init__(
        self,
        weight: float = 0.1,
        data: str | None = None,
        resolution: int = 8,
        colour: bool | None = None,
        bands: int = 0,
        shrinkage: float = 0.1,
        max_images: int = 2000,
    ) -> None:
        if not weight >= 0:  # also rejects NaN
            raise FeatvisError(f"GaussianPrior weight must be >= 0, got {weight}")
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise FeatvisError(f"GaussianPrior resolution must be a whole number >= 1, got {resolution!r}")
        if isinstance(bands, bool) or not isinstance(bands, int) or not 0 <= bands <= 8:
            raise FeatvisError(f"GaussianPrior bands must be a whole number in 0..8, got {bands!r}")
        if not 0 < shrinkage <= 1:
            raise FeatvisError(
                f"GaussianPrior shrinkage must be in (0, 1] (0 leaves the data's covariance singular), got {shrinkage}"
            )
        if max_images < 2:
            raise FeatvisError(f"GaussianPrior max_images must be at least 2, got {max_images}")
        self.weight, self.data, self.resolution, self.colour = weight, data, resolution, colour
        self.bands, self.shrinkage, self.max_images = bands, shrinkage, max_images
        # float64 on the CPU, set by fit(): "pixel_mean" [D_p], "pixel_precision" [D_p, D_p],
        # with bands also "band_mean" [D_b], "band_precision" [D_b, D_b]; "colour" a 0-d bool
        self.fitted: dict[str, torch.Tensor] | None = None
        # (file, fingerprint) of a prior fitted in setup and not yet kept beside the run
        self._unsaved: tuple[Path, str] | None = None
        self._cache: dict[tuple[torch.device, torch.dtype], dict[str, torch.Tensor]] = {}

    # --- the values the Gaussians describe ----------------------------------------------------

    @property
    def in_colour(self) -> bool:
        """Whether the fitted prior models colour (known once fitted, or when ``colour`` is set)."""
        if self.fitted is not None:
            return bool(self.fitted["colour"])
        if self.colour is None:
            raise FeatvisError("GaussianPrior: whether the data has colour is known only once the prior is fitted")
        return self.colour

    def _channels(self, images: torch.Tensor, colour: bool) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise FeatvisError(f"GaussianPrior needs RGB images [N, 3, H, W], got shape {tuple(images.shape)}")
        return images if colour else images.mean(dim=1, keepdim=True)

    def pixels(self, images: torch.Tensor, colour: bool | None = None) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` -> their ``[N, D_p]`` area-averaged pixels."""
        x = self._channels(images, self.in_colour if colour is None else colour)
        if self.resolution > x.shape[-1]:
            raise FeatvisError(f"GaussianPrior resolution {self.resolution} is finer than the images "
                               f"({x.shape[-1]} px): choose at most {x.shape[-1]}")
        # adaptive average pooling is area averaging (exact cells when the side divides evenly)
        return F.adaptive_avg_pool2d(x, self.resolution).flatten(1)

    def band_energies(self, images: torch.Tensor, colour: bool | None = None) -> torch.Tensor:
        """Images ``[N, 3, H, H]`` -> the log mean power of each channel (decorrelated colour, or
        grey) in each of the ``bands`` frequency octaves ``[N, C' * bands]``."""
        colour = self.in_colour if colour is None else colour
        x = rgb_to_decorrelated(images) if colour else self._channels(images, False)
        side = x.shape[-1]
        power = torch.fft.rfft2(x - x.mean(dim=(-2, -1), keepdim=True), norm="ortho").abs().square()
        freq = radial_frequency(side).to(x.device, x.dtype)
        energies = []
        for band in range(self.bands):
            high, low = 0.5 / 2**band, 0.5 / 2 ** (band + 1)
            mask = (freq > low) & (freq <= high)
            if not mask.any():
                raise FeatvisError(f"GaussianPrior bands={self.bands}: a {side} px image has no frequencies in "
                                   f"octave {band}; choose fewer bands")
            energies.append(power[..., mask].mean(dim=-1))  # [N, C']
        return torch.log(torch.stack(energies, dim=-1) + 1e-8).flatten(1)

    # --- fitting ------------------------------------------------------------------------------

    def fit(self, images: torch.Tensor) -> GaussianPrior:
        """Fit the Gaussians to real images ``[N, 3, H, W]`` in [0, 1] (in float64)."""
        if images.dim() != 4:
            raise FeatvisError(f"GaussianPrior needs images [N, C, H, W], got shape {tuple(images.shape)}")
        if images.shape[0] < 2:
            raise FeatvisError(f"GaussianPrior needs at least 2 images to fit a covariance, got {images.shape[0]}")
        images = images.detach().to("cpu", torch.float64)
        colour = self.colour
        if colour is None:
            # grey data (the digits) is stored as three equal channels
            colour = bool((images - images.mean(dim=1, keepdim=True)).abs().max() > 1e-3)
        fitted = {"colour": torch.tensor(colour)}
        fitted["pixel_mean"], fitted["pixel_precision"] = _gaussian(self.pixels(images, colour), self.shrinkage)
        if self.bands:
            fitted["band_mean"], fitted["band_precision"] = _gaussian(self.band_energies(images, colour),
                                                                      self.shrinkage)
        self.fitted = fitted
        self._cache.clear()
        return self

    def fingerprint(self, source: str, size: int) -> str:
        """What a fitted prior depends on, hashed: the source, the side and the settings."""
        settings = dict(source=source, size=size, resolution=self.resolution, colour=self.colour, bands=self.bands,
                        shrinkage=self.shrinkage, max_images=self.max_images)
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]

    def fit_source(self, source: str, size: int) -> GaussianPrior:
        """Fit to the image source ``source`` read at ``size`` px (at most ``max_images``; once
        per process and settings)."""
        key = self.fingerprint(source, size)
        if key not in _FITTED:
            _FITTED[key] = self.fit(sample_images(source, size, self.max_images)).fitted
        self.fitted = _FITTED[key]
        self._cache.clear()
        return self

    def setup(self, trainer, pl_module, stage) -> None:
        source = self.data or pl_module.network.training_data
        if source is None:
            raise FeatvisError(f"GaussianPrior: the model {pl_module.network.name} declares no training data; give the "
                               "prior an image source (data: a folder of images, hf:NAME, digits, photos)")
        size = pl_module.network.image_size
        key = self.fingerprint(source, size)
        log_dir = logger_dir(trainer)
        cache = Path(log_dir) / CACHE_FILE if log_dir else None
        self._unsaved = None
        if cache is not None and cache.is_file():
            try:
                saved = torch.load(cache, map_location="cpu", weights_only=True)
            except Exception:  # a damaged cache (a run killed mid-write by an older version) is refitted over
                saved = {}
            if isinstance(saved, dict) and saved.get("fingerprint") == key:
                self.fitted = {name: value for name, value in saved.items() if name != "fingerprint"}
                _FITTED.setdefault(key, self.fitted)
                self._cache.clear()
                return
        self.fit_source(source, size)
        self._unsaved = (cache, key) if cache is not None else None

    def on_train_start(self, trainer, pl_module) -> None:
        # Kept only once the run starts: a run refused while it is set up (a bad optimizer, no
        # GPU) must leave no version folder behind.
        if self._unsaved is None or not trainer.is_global_zero:
            return
        (cache, key), self._unsaved = self._unsaved, None
        buffer = io.BytesIO()
        torch.save({"fingerprint": key, **self.fitted}, buffer)
        try:
            atomic_write(cache, buffer.getvalue())
        except WriteError as err:  # the prior is in memory: a cache that cannot be written costs a refit, no more
            print(f"featvis: warning: could not keep the data prior in {cache}: {err.reason}", file=sys.stderr)

    # --- the penalty --------------------------------------------------------------------------

    def statistics(self, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """The fitted means and precisions on ``device`` in ``dtype`` (moved once, then cached:
        the penalty runs every step)."""
        if self.fitted is None:
            raise FeatvisError("GaussianPrior is not fitted: it fits itself when a run starts, or call fit(images) "
                               "or fit_source(source, size)")
        key = (torch.device(device), dtype)
        if key not in self._cache:
            self._cache[key] = {name: value.to(device, dtype) for name, value in self.fitted.items()
                                if name != "colour"}
        return self._cache[key]

    def distance(self, view: torch.Tensor) -> torch.Tensor:
        """``d_p^2 / D_p + d_b^2 / D_b`` per image ``[G]`` of views ``[G, 3, s, s]`` (differentiable)."""
        stats = self.statistics(view.device, view.dtype)
        x = self.pixels(view)
        total = _mahalanobis(x, stats["pixel_mean"], stats["pixel_precision"]) / x.shape[1]
        if self.bands:
            b = self.band_energies(view)
            total = total + _mahalanobis(b, stats["band_mean"], stats["band_precision"]) / b.shape[1]
        return total

    def penalty(self, view: torch.Tensor, image: torch.Tensor, step: int) -> torch.Tensor:
        return self.weight * self.distance(view)
