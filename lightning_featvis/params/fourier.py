"""Fourier parameterization: canvases stored as scaled real-FFT spectra (Lucid/Lucent's ``fft_image``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lightning_featvis.params.base import ImageParam
from lightning_featvis.params.color import (
    decorrelated_to_rgb,
    rgb_to_decorrelated,
    squash,
    unsquash,
)


def radial_frequency(size: int) -> torch.Tensor:
    """Radial frequency (cycles per pixel) of every bin of an ``S x S`` ``rfft2``: ``[S, S // 2 + 1]``."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


class FourierImage(ImageParam):
    """Canvases stored as real-FFT spectra, scaled so that every frequency starts with about
    the power of natural images (1/f): the optimiser then moves low frequencies as easily as
    high ones, instead of producing the high-frequency noise plain pixels drift to.

    Storage ``spectrum`` ``[G, C, S_max, S_max // 2 + 1, 2]`` (real, imaginary), allocated once;
    at canvas side S the active region is ``[:, :, :S, :S // 2 + 1]`` and the rest is zero.
    Rendering: spectrum * ``S / max(f, 1/S) ** decay_power`` -> ``irfft2`` to ``[G, C, S, S]``
    -> optional colour decorrelation -> sigmoid. The factor S makes the default-normalised
    ``irfft2`` orthonormal, so a spectrum of fixed ``sd`` gives images of about the same
    contrast at every size. (Unlike Lucent, no extra division by 4: with ``sd = 0.01`` the
    pre-sigmoid image already has a std of ~0.05, a near-grey start.)

    Args:
        sd: std of the initial spectrum entries (per canvas from ``Generator().manual_seed(seed)``).
        decay_power: exponent of the 1/f scaling (0: white spectrum, plain pixel statistics).
        decorrelate: map channels through the ImageNet colour-correlation square root.

    Padding slots (seed None) are a zero spectrum: a grey (0.5) canvas.
    """

    def __init__(self, sd: float = 0.01, decay_power: float = 1.0, decorrelate: bool = True) -> None:
        super().__init__()
        self.sd, self.decay_power, self.decorrelate = sd, decay_power, decorrelate
        self.spectrum = nn.Parameter(torch.empty(0, self.channels, 0, 1, 2))
        self._size = 0
        self._scales: dict[int, torch.Tensor] = {}

    def allocate(self, count: int, max_size: int) -> None:
        self.spectrum = nn.Parameter(torch.zeros(count, self.channels, max_size, max_size // 2 + 1, 2))

    @property
    def size(self) -> int:
        return self._size

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        shape = self.adopt_saved_storage(state_dict, prefix, "spectrum")
        if shape is not None:
            self._size = shape[-3]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale(self, size: int) -> torch.Tensor:
        """Per-bin factor ``[S, S // 2 + 1]`` applied to the stored spectrum at side ``size``."""
        if size not in self._scales:
            freqs = radial_frequency(size)
            self._scales[size] = size / freqs.clamp(min=1.0 / size) ** self.decay_power
        return self._scales[size].to(device=self.spectrum.device, dtype=self.spectrum.dtype)

    def _region(self, size: int) -> torch.Tensor:
        return self.spectrum[:, :, :size, : size // 2 + 1]

    def render(self, spectrum: torch.Tensor, size: int) -> torch.Tensor:
        """Spectrum region ``[G, C, S, S // 2 + 1, 2]`` -> image ``[G, C, S, S]`` in (0, 1)."""
        scaled = torch.view_as_complex(spectrum) * self.scale(size)
        image = torch.fft.irfft2(scaled, s=(size, size))
        if self.decorrelate:
            image = decorrelated_to_rgb(image)
        return squash(image)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`render` (up to the logit's clamp): ``[G, C, S, S]`` ->
        ``[G, C, S, S // 2 + 1, 2]``."""
        size = image.shape[-1]
        values = unsquash(image.to(self.spectrum.dtype))
        if self.decorrelate:
            values = rgb_to_decorrelated(values)
        return torch.view_as_real(torch.fft.rfft2(values) / self.scale(size))

    def _store(self, image: torch.Tensor) -> None:
        size = image.shape[-1]
        with torch.no_grad():
            self.spectrum.zero_()  # bins outside the new region must not leak into a later size
            self._region(size).copy_(self.encode(image))
        self._size = size

    def reset_(self, seeds: Sequence[int | None], size: int) -> None:
        shape = (self.channels, size, size // 2 + 1, 2)
        with torch.no_grad():
            self.spectrum.zero_()
            for i, seed in enumerate(seeds):
                if seed is None:
                    continue
                gen = torch.Generator().manual_seed(seed)
                values = torch.randn(shape, generator=gen) * self.sd
                self.spectrum[i, :, :size, : size // 2 + 1] = values.to(self.spectrum)
        self._size = size

    def resize_(self, size: int) -> None:
        if size == self._size:
            return
        with torch.no_grad():
            image = self.forward()
            grown = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        self._store(grown)

    def forward(self) -> torch.Tensor:
        return self.render(self._region(self._size), self._size)

    def update_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        with torch.no_grad():
            edited = fn(self.forward())
        self._store(edited)
