"""Which weights a zoo adapter loads: the file it was given, the one shipped in the package, or none."""

from __future__ import annotations

from pathlib import Path


def shipped_or(checkpoints: Path, name: str, pretrained: bool, checkpoint: str | None) -> str | None:
    """``checkpoint`` when given, else the shipped ``<checkpoints>/<name>.pt`` when ``pretrained``,
    else none (random weights)."""
    if checkpoint is None and pretrained:
        return str(checkpoints / f"{name}.pt")
    return checkpoint
