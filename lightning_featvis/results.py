"""What a finished group produced, gathered from every rank: the value every
:class:`~lightning_featvis.callbacks.GroupResultHook` receives."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lightning_featvis.targets import Target


@dataclass
class GroupResult:
    """What a finished group produced (gathered from every rank onto each).

    Attributes:
        targets: the targets, one per result (padding removed), N of them.
        images: their final inputs as written (:meth:`InputParam.rendered`): canvases
            ``[N, C, S, S]`` in [0, 1], or a text run's input embeddings ``[N, T, D]``; on the CPU.
        activations: mean selected activation of each target's centre view ``[N]``.
        losses: each target's loss on its centre view ``[N]`` (penalties included; for
            reconstruction, the distance to the target photo's output).
        notes: per target, ``""`` or why it stopped early (``non-finite loss at step 12``: its
            image is the last finite one).
    """

    targets: list[Target]
    images: torch.Tensor
    activations: torch.Tensor
    losses: torch.Tensor
    notes: list[str] = field(default_factory=list)
