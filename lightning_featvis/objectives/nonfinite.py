"""The non-finite guard: a target whose loss or input turns NaN or inf stops, keeping its last
finite input, while the other targets of its group go on."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from lightning_featvis.params import InputParam
from lightning_featvis.targets import Target

KINDS = ("loss", "image")


class NonFiniteGuard:
    """Per group: which targets stopped, at which step and why, and each slot's storage before
    the step under way (what a stopped target goes back to)."""

    def __init__(self) -> None:
        self.stopped_step = torch.empty(0, dtype=torch.long)  # [G], -1: running
        self.stopped_kind = torch.empty(0, dtype=torch.long)  # [G], an index into KINDS
        self.before_step: list[torch.Tensor] = []

    def start_group(self, count: int) -> None:
        """A new group (or one taken up from a checkpoint, which does not keep stops) of
        ``count`` slots, all running."""
        self.stopped_step = torch.full((count,), -1, dtype=torch.long)
        self.stopped_kind = torch.zeros(count, dtype=torch.long)

    def running(self) -> torch.Tensor:
        """``[G]`` bool: the slots not stopped."""
        return self.stopped_step < 0

    def remember(self, param: InputParam) -> None:
        """Before a step: keep a copy of every slot's storage."""
        self.before_step = [p.detach().clone() for p in param.parameters()]

    def stop(self, bad: torch.Tensor, targets: Sequence[Target | None], step: int, kind: str) -> None:
        """Stop the running targets flagged in ``bad`` ``[G]`` (a NaN or inf in their ``loss``
        or ``image``) at ``step``, saying so on stderr."""
        for i in torch.nonzero(bad & self.running()).flatten().tolist():
            target = targets[i]
            if target is None:
                continue
            self.stopped_step[i], self.stopped_kind[i] = step, KINDS.index(kind)
            print(f"featvis: {target.key}: non-finite {kind} at step {step}; this target stops "
                  "with its last finite image, the others go on", file=sys.stderr)

    def hold(self, param: InputParam, targets: Sequence[Target | None], step: int) -> None:
        """After the step: stop targets whose input went non-finite, and put every stopped
        target's storage back to what it was before the step (its last finite input)."""
        if not self.before_step:
            return
        with torch.no_grad():
            inputs = param()
            self.stop(~torch.isfinite(inputs.flatten(1)).all(dim=1).cpu(), targets, step, "image")
            stopped = torch.nonzero(~self.running()).flatten().tolist()
            for current, before in zip(param.parameters(), self.before_step):
                for i in stopped:
                    current[i].copy_(before[i])

    def state(self) -> torch.Tensor:
        """``[G, 2]``: each slot's stop step (-1: running) and kind, to gather across ranks."""
        return torch.stack([self.stopped_step, self.stopped_kind], dim=1)

    @staticmethod
    def notes(state: torch.Tensor) -> list[str]:
        """Per slot of a gathered :meth:`state` ``[N, 2]``: ``""`` or why it stopped early."""
        return ["" if s < 0 else f"non-finite {KINDS[k]} at step {s}" for s, k in state.tolist()]
