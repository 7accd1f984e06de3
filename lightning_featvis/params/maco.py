"""MACO: optimise only the Fourier phase of the canvas, with a fixed magnitude spectrum.

Fel et al. 2023, "Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.errors import FeatvisError
from lightning_featvis.params.base import ImageParam
from lightning_featvis.params.color import squash, unsquash
from lightning_featvis.params.fourier import radial_frequency


def load_magnitude(magnitude: str | None, size: int, channels: int = 3) -> torch.Tensor:
    """The fixed magnitude spectrum ``[C, S, S // 2 + 1]`` at side ``size`` (see :class:`MacoImage`)."""
    if magnitude is None:
        inverse_f = 1.0 / radial_frequency(size).clamp(min=1.0 / size)
        return inverse_f.expand(channels, -1, -1).contiguous()
    path = Path(magnitude).expanduser()
    if not path.is_file():
        from lightning_featvis.data_statistics import sample_images

        try:
            images = sample_images(magnitude, size)
        except FeatvisError as err:
            raise FeatvisError(f"MACO magnitude {magnitude!r} is neither a file saved with torch.save nor an image "
                               f"source ({err})") from err
        return torch.fft.rfft2(images).abs().mean(dim=0)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise FeatvisError(f"cannot read MACO magnitude {path}: not a tensor saved with torch.save "
                           f"({type(err).__name__})") from err
    if not isinstance(saved, torch.Tensor) or saved.dim() != 3 or saved.shape[0] not in (1, channels):
        shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
        raise FeatvisError(f"{path}: expected a [C, H, W // 2 + 1] magnitude tensor (C = 1 or {channels}), got {shape}")
    saved = saved.float()
    if saved.shape[-2:] != (size, size // 2 + 1):
        # bins in fftfreq order keep their relative frequency under a linear resampling
        saved = F.interpolate(saved[None], size=(size, size // 2 + 1), mode="bilinear", align_corners=False)[0]
    return saved.expand(channels, -1, -1).contiguous()


class MacoImage(ImageParam):
    """Phase-only Fourier canvases (MACO): the magnitude spectrum is fixed to that of natural
    (or the model's training) images, so the optimiser can only rearrange structure, never
    pump energy into the high frequencies that make adversarial-looking noise.

    Storage ``phase`` ``[G, C, S_max, S_max // 2 + 1]``, allocated once; at side S the active
    region is ``[:, :, :S, :S // 2 + 1]``. Rendering: ``irfft2(magnitude * exp(i * phase),
    s=(S, S))``, then per-canvas standardisation over channels and pixels (subtract mean,
    divide by std + 1e-8) and ``sigmoid(value_scale * x)``. With the default ``value_scale``
    of 1 the standardised values are ~N(0, 1), so pixels span about (0.12, 0.88) for +-2 std:
    strong contrast without saturating the sigmoid (where gradients vanish).

    Args:
        magnitude: ``None``: a 1/f spectrum ``1 / max(f, 1/S)``; a ``.pt`` file holding
            ``[C, H, W // 2 + 1]`` (C of 1 or 3), resampled bilinearly to the canvas size if
            needed; otherwise an image source
            (:func:`~lightning_featvis.image_sources.image_source`: ``digits``, ``photos:train``,
            a folder, ``hf:NAME``), whose mean ``|rfft2|`` per channel at the canvas size is
            the magnitude. Cached per size.
        value_scale: multiplies the standardised image before the sigmoid (contrast).

    Phases start uniform in [-pi, pi) per canvas from its seed; padding slots (seed None)
    get zero phase (a deterministic image, not grey). The magnitude is fixed, so
    :meth:`resize_` and :meth:`update_` keep only the *phase* of the new image's spectrum:
    a projection onto the images this parameterization can show, not an exact re-encoding.
    Also, ``irfft2`` symmetrises the first (and, at even S, the Nyquist) column of the
    half-spectrum, so the rendered magnitude equals the fixed one exactly only elsewhere.
    """

    def __init__(self, magnitude: str | None = None, value_scale: float = 1.0) -> None:
        super().__init__()
        self.magnitude_source, self.value_scale = magnitude, value_scale
        self.phase = nn.Parameter(torch.empty(0, self.channels, 0, 1))
        self._size = 0
        self._magnitudes: dict[int, torch.Tensor] = {}

    def allocate(self, count: int, max_size: int) -> None:
        self.phase = nn.Parameter(torch.zeros(count, self.channels, max_size, max_size // 2 + 1))

    @property
    def size(self) -> int:
        return self._size

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        shape = self.adopt_saved_storage(state_dict, prefix, "phase")
        if shape is not None:
            self._size = shape[-2]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def magnitude(self, size: int) -> torch.Tensor:
        """The fixed magnitude ``[C, S, S // 2 + 1]`` on the phase's device."""
        cached = self._magnitudes.get(size)
        if cached is None or cached.device != self.phase.device or cached.dtype != self.phase.dtype:
            cached = load_magnitude(self.magnitude_source, size, self.channels).to(self.phase)
            self._magnitudes[size] = cached
        return cached

    def _region(self, size: int) -> torch.Tensor:
        return self.phase[:, :, :size, : size // 2 + 1]

    def raw(self) -> torch.Tensor:
        """The render before standardisation ``[G, C, S, S]`` (its ``|rfft2|`` is the fixed magnitude)."""
        s = self._size
        spectrum = torch.polar(self.magnitude(s).expand_as(self._region(s)), self._region(s))
        return torch.fft.irfft2(spectrum, s=(s, s))

    def forward(self) -> torch.Tensor:
        image = self.raw()
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        std = image.std(dim=(1, 2, 3), keepdim=True)
        return squash((image - mean) / (std + 1e-8) * self.value_scale)

    def _store_phase(self, image: torch.Tensor) -> None:
        # the logit undoes the sigmoid; the standardisation's positive scale and offset only
        # touch the DC bin's phase (whose value standardisation removes anyway)
        size = image.shape[-1]
        values = unsquash(image.to(self.phase.dtype))
        with torch.no_grad():
            self.phase.zero_()
            self._region(size).copy_(torch.angle(torch.fft.rfft2(values)))
        self._size = size

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        shape = (self.channels, size, size // 2 + 1)
        with torch.no_grad():
            self.phase.zero_()
            for i, seed in enumerate(seeds):
                if seed is None:
                    continue
                gen = torch.Generator().manual_seed(seed)
                values = (torch.rand(shape, generator=gen) * 2 - 1) * torch.pi
                self.phase[i, :, :size, : size // 2 + 1] = values.to(self.phase)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            grown = F.interpolate(self.forward(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        self._store_phase(grown)

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            edited = fn(self.forward())
        self._store_phase(edited)
