"""Gathering a finished group from every rank into one
:class:`~lightning_featvis.results.GroupResult`."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from lightning_featvis.objectives.nonfinite import NonFiniteGuard
from lightning_featvis.results import GroupResult
from lightning_featvis.targets import TargetGroup


def gather_group(module: L.LightningModule, groups: Sequence[TargetGroup], group: int, slots: int,
                 images: torch.Tensor, activations: torch.Tensor, losses: torch.Tensor,
                 stopped: torch.Tensor) -> GroupResult:
    """Every rank's share of group ``group`` (``slots`` per rank, padding included) as one
    result: ``images`` ``[G, ...]``, ``activations`` and ``losses`` ``[G]`` and the guard's
    ``stopped`` state ``[G, 2]`` of this rank, ``groups`` the run's groups by index."""
    group_ids = torch.tensor([group], device=module.device)
    stopped = stopped.to(module.device)
    if module.trainer.world_size > 1:
        images, activations, losses, group_ids, stopped = (
            module.all_gather(t) for t in (images, activations, losses, group_ids, stopped))
        images, activations, losses = images.flatten(0, 1), activations.flatten(0, 1), losses.flatten(0, 1)
        group_ids, stopped = group_ids.flatten(), stopped.flatten(0, 1)
    notes = NonFiniteGuard.notes(stopped)
    padding = (None,) * slots
    targets = [t for g in group_ids.tolist() for t in (groups[g].targets if g >= 0 else padding)]
    keep = [i for i, t in enumerate(targets) if t is not None]
    return GroupResult(
        targets=[targets[i] for i in keep],
        images=images[keep].float().cpu(),
        activations=activations[keep].float().cpu(),
        losses=losses[keep].float().cpu(),
        notes=[notes[i] for i in keep],
    )
