"""Transformation robustness: k randomly transformed copies of every view, in one batch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lightning_featvis.callbacks.roles import ViewAugmentation
from lightning_featvis.errors import FeatvisError
from lightning_featvis.seeding import derive_seed, run_seed
from lightning_featvis.targets import Target


class AugmentationEnsemble(ViewAugmentation):
    """Shows the model ``copies`` randomly transformed versions of each target's view per step
    (Ghiasi et al. 2022's augmentation ensembles for ViTs); the target's loss is the mean over
    its copies, so its gradient is the mean of the copies' gradients. With ``copies: 1`` it is
    plain random jitter / scale / rotation (Lucent's transforms); every transform is off at 0.

    Each copy is one differentiable affine resampling of the view
    (``torch.nn.functional.affine_grid`` + ``grid_sample``, reflection padding) followed by a
    colour shift. Its parameters come from a generator seeded by (run seed, target, step), so
    results never depend on grouping or on the number of devices.

    Args:
        copies: transformed copies per target and step (k).
        jitter: largest shift, as a fraction of the view side (uniform in both axes).
        scale: ``[low, high]`` zoom factor range (uniform; 1 = unchanged; ``null`` = off).
        rotate: largest rotation in degrees (uniform in ``[-rotate, rotate]``).
        color: per-channel colour shift: each channel becomes ``x * (1 + a) + b`` with ``a``
            and ``b`` uniform in ``[-color, color]``; grey images stay grey only at 0.
        grey_shift: shift all channels by the same amount (keeps grey images grey); ``None``:
            when the views are grey (all channels equal), else per channel.
    """

    def __init__(
        self,
        copies: int = 8,
        jitter: float = 0.1,
        scale: Sequence[float] | None = (0.9, 1.1),
        rotate: float = 10.0,
        color: float = 0.1,
        grey_shift: bool | None = False,
    ) -> None:
        if copies < 1:
            raise FeatvisError(f"AugmentationEnsemble needs copies >= 1, got {copies}")
        if scale is not None and (len(scale) != 2 or not 0 < scale[0] <= scale[1]):
            raise FeatvisError(f"AugmentationEnsemble scale must be [low, high] with 0 < low <= high, got {scale}")
        self.copies, self.jitter, self.rotate, self.color = copies, jitter, rotate, color
        self.scale = tuple(scale) if scale is not None else None
        self.grey_shift = grey_shift

    def sample(self, target: Target | None, step: int, grey: bool | None = None) -> torch.Tensor:
        """Parameters of ``target``'s k copies at ``step``, ``[k, 10]``: shift y and x (in
        ``affine_grid`` units), zoom, angle (radians), then gain ``a`` and shift ``b`` of the
        red, green and blue channels (see :meth:`apply`). ``grey``: whether the views are grey
        (decides ``grey_shift: null``)."""
        gen = torch.Generator().manual_seed(derive_seed(run_seed(), "augment", target.key if target else None, step))
        u = torch.rand(self.copies, 10, generator=gen) * 2 - 1  # uniform in [-1, 1)
        shift = u[:, 0:2] * self.jitter * 2  # affine_grid's coordinates span 2 per side
        if self.scale is None:
            zoom = torch.ones(self.copies)
        else:
            low, high = self.scale
            zoom = low + (u[:, 2] + 1) / 2 * (high - low)
        angle = u[:, 3] * math.radians(self.rotate)
        gain = u[:, 4:7] * self.color
        bias = u[:, 7:10] * self.color
        if self.grey_shift or (self.grey_shift is None and grey):
            gain, bias = gain[:, :1].expand(-1, 3), bias[:, :1].expand(-1, 3)
        return torch.cat([shift, zoom[:, None], angle[:, None], gain, bias], dim=1)

    def apply(self, views: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Transformed copies ``[N, C, s, s]`` of ``views`` ``[N, C, s, s]`` with one row of
        :meth:`sample` parameters each ``[N, 10]``."""
        params = params.to(views.device, views.dtype)
        ty, tx, zoom, angle = params[:, 0], params[:, 1], params[:, 2], params[:, 3]
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(views.shape), align_corners=False)
        out = F.grid_sample(views, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        channels = views.shape[1]
        gain = params[:, 4 : 4 + channels, None, None]
        bias = params[:, 7 : 7 + channels, None, None]
        return out * (1 + gain) + bias

    def augment(self, view: torch.Tensor, targets: Sequence[Target | None], step: int) -> torch.Tensor:
        """``[G * k, C, s, s]``: k copies of each of the G views, target-major."""
        grey = self.grey_shift is None and bool((view[:, 1:] == view[:, :1]).all())
        params = torch.cat([self.sample(target, step, grey) for target in targets])
        return self.apply(view.repeat_interleave(self.copies, dim=0), params)
