"""Colour decorrelation and squashing shared by the decorrelated parameterizations.

Neighbouring ImageNet colour channels are strongly correlated, so gradient steps taken
directly on RGB pixels mostly change brightness. Lucid/Lucent optimise instead in a space
whose axes are (approximately) the principal colour components and map to RGB with the
square root of the colour covariance; a sigmoid then keeps the result in [0, 1].
"""

from __future__ import annotations

import torch

# square root of ImageNet's 3x3 colour correlation (Lucid's ``color_correlation_svd_sqrt``);
# rows are RGB output channels, columns decorrelated input channels
_CORRELATION_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
# normalised by the largest column norm, as Lucent does, so that no decorrelated axis is
# amplified: a unit step in any decorrelated channel moves RGB by at most a unit
COLOR_MATRIX = _CORRELATION_SQRT / _CORRELATION_SQRT.norm(dim=0).max()
COLOR_MATRIX_INV = torch.linalg.inv(COLOR_MATRIX)

SQUASH_EPS = 1e-6


def _mix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix to every pixel of ``x`` ``[G, 3, H, W]``."""
    if x.shape[-3] != 3:
        raise ValueError(f"colour decorrelation needs 3 channels, got shape {tuple(x.shape)}")
    # the inverse is computed in float64 once; cast to x's dtype/device per call
    return torch.einsum("cd,...dhw->...chw", matrix.to(dtype=x.dtype, device=x.device), x)


def decorrelated_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Map decorrelated colour values ``[G, 3, H, W]`` to (unsquashed) RGB ``[G, 3, H, W]``."""
    return _mix(x, COLOR_MATRIX)


def rgb_to_decorrelated(x: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`decorrelated_to_rgb` (``[G, 3, H, W]`` in, same shape out):
    used to re-encode an edited image into the stored parameters."""
    return _mix(x, COLOR_MATRIX_INV)


def squash(x: torch.Tensor) -> torch.Tensor:
    """Unbounded values to (0, 1) with a sigmoid: any parameter value is a valid image, and
    the gradient never dies the way it does under a clamp."""
    return torch.sigmoid(x)


def unsquash(x: torch.Tensor, eps: float = SQUASH_EPS) -> torch.Tensor:
    """Inverse of :func:`squash`: the logit, with ``x`` clamped to ``(eps, 1 - eps)`` first so
    that edited images touching 0 or 1 re-encode to large but finite values."""
    return torch.logit(x.clamp(eps, 1 - eps))
