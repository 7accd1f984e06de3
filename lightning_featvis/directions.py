"""Directions in a layer's activation space: named sets of vectors (a sparse autoencoder's
decoder rows, a linear probe's weights, a difference of class means), addressed as units
(``direction=sae[3]``: row 3 of set ``sae``; ``direction=sae[*]``: every row, a sweep).

A set is a ``[K, D]`` matrix (a ``[D]`` vector is one row) given as a tensor in Python or as a
file in YAML (``.pt``: ``torch.save`` of a tensor; ``.npy``: ``numpy.save``). A unit's tokens
``[B, t, D]`` (all patches, one patch, the class token: ``patch=`` and ``cls=`` as for neurons)
are projected on its row ``v`` ``[D]`` per token, as:

- ``dot``: ``x . v``;
- ``cosine``: ``x . v / (|x| |v|)``;
- ``cossim``: Lucid's ``direction_neuron_cossim``, ``(x . v / |v|) * max(cos, 0.1) ** p``:
  the dot product weighted by the cosine to a power ``p`` (``cossim_pow``), so the image moves
  the activation along ``v`` and not only its norm.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.models.adapter import Layout
from lightning_featvis.units import Unit, select_tokens

DirectionForm = Literal["dot", "cosine", "cossim"]


def load_direction_set(name: str, value: str | Path | torch.Tensor | np.ndarray) -> torch.Tensor:
    """Set ``name`` as a float32 ``[K, D]`` matrix on the CPU, from a tensor, an array or a file."""
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise FeatvisError(f"direction set {name!r}: file not found: {path}; give a .pt (torch.save) or .npy file")
        try:
            value = np.load(path) if path.suffix == ".npy" else torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file means the same to the user
            raise FeatvisError(f"direction set {name!r}: cannot read {path} ({type(err).__name__}); "
                               "give a tensor saved with torch.save (.pt) or an array saved with numpy.save (.npy)") from err
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.asarray(value, dtype=np.float32))
    if not isinstance(value, torch.Tensor):
        raise FeatvisError(f"direction set {name!r} holds {type(value).__name__}, not a [D] vector or [K, D] matrix")
    matrix = value.detach().float().cpu()
    if matrix.dim() == 1:
        matrix = matrix.unsqueeze(0)
    if matrix.dim() != 2 or matrix.shape[0] == 0:
        raise FeatvisError(f"direction set {name!r} has shape {list(value.shape)}: give a [D] vector or a [K, D] matrix")
    if not torch.isfinite(matrix).all():
        raise FeatvisError(f"direction set {name!r} holds NaN or inf values")
    return matrix


class DirectionSets:
    """The named direction sets of a run.

    Args:
        sets: ``{name: [K, D] tensor, [D] vector, array, or .pt / .npy path}``.
        form: how tokens are projected on a direction (see the module).
        cossim_pow: the power ``p`` of the ``cossim`` form.
    """

    def __init__(self, sets: Mapping[str, object] | None = None, form: DirectionForm = "dot",
                 cossim_pow: float = 1.0) -> None:
        if form not in ("dot", "cosine", "cossim"):
            raise FeatvisError(f"direction_form must be dot, cosine or cossim, got {form!r}")
        self.sources = dict(sets or {})
        self.form, self.cossim_pow = form, cossim_pow
        self._matrices: dict[str, torch.Tensor] = {}

    def matrix(self, name: str) -> torch.Tensor:
        """Set ``name``, ``[K, D]`` (read once)."""
        if name not in self.sources:
            known = ", ".join(sorted(self.sources)) or "none (give directions: {name: file})"
            raise FeatvisError(f"unknown direction set {name!r}; the sets are {known}")
        if name not in self._matrices:
            self._matrices[name] = load_direction_set(name, self.sources[name])
        return self._matrices[name]

    def sizes(self) -> dict[str, int]:
        """Rows per set, for ``direction=NAME[*]``."""
        return {name: self.matrix(name).shape[0] for name in self.sources}

    def with_sizes(self, sizes: dict) -> dict:
        """A layer's ``sizes`` (what ``*`` stands for), with the sets' rows when there are sets."""
        return {**sizes, "directions": self.sizes()} if self.sources else sizes

    def select(self, acts: torch.Tensor, layout: Layout, unit: Unit) -> torch.Tensor:
        """The tokens a direction ``unit`` names in a layer output ``acts`` (its patches, class
        token as ``cls=``), each projected on its direction: ``[B, t]`` (float32)."""
        return self.project(select_tokens(acts, layout, unit), *unit.direction)

    def check(self, name: str, row: int, width: int, layer: str) -> None:
        """Refuse a row out of range or a set whose width is not the layer's."""
        matrix = self.matrix(name)
        if matrix.shape[1] != width:
            raise FeatvisError(f"direction set {name!r} has width {matrix.shape[1]}, but layer {layer!r} has "
                               f"width {width}: its vectors must have one value per neuron of the layer")
        if not 0 <= row < matrix.shape[0]:
            raise FeatvisError(f"direction {name}[{row}] is out of range: set {name!r} has rows 0-{matrix.shape[0] - 1}")

    def project(self, tokens: torch.Tensor, name: str, row: int) -> torch.Tensor:
        """Tokens ``[B, t, D]`` projected on direction ``name[row]``: ``[B, t]`` (float32)."""
        v = self.matrix(name)[row].to(tokens.device)
        x = tokens.float()
        dot = x @ v
        if self.form == "dot":
            return dot
        cos = dot / (x.norm(dim=-1) * v.norm()).clamp(min=1e-8)
        if self.form == "cosine":
            return cos
        return dot / v.norm().clamp(min=1e-8) * cos.clamp(min=0.1) ** self.cossim_pow
