"""What a dataset-examples pass found, and its folder on disk (what ``featvis examples`` writes
and ``featvis gallery`` reads).

The folder holds:

- ``examples.pt``: :class:`DatasetExamples` as plain tensors, lists and numbers
  (``torch.load(..., weights_only=True)`` reads it);
- ``examples.csv``: one row per target, side (``top`` / ``bottom``), rank and example: the
  dataset index, its activation and its image file;
- ``images/NNNNNN.png``: every image that is some target's example, as the model saw it
  (``S x S``), named by its dataset index.

Shapes: U targets, k examples per target and side, P patches (``gh x gw`` grid), K histogram bins.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lightning_featvis.errors import FeatvisError
from lightning_featvis.files import atomic_write, atomic_write_csv

#: bumped when the folder's layout changes incompatibly
FORMAT = 1
FILE = "examples.pt"
TABLE = "examples.csv"
IMAGES = "images"


@dataclass
class DatasetExamples:
    """Each target's top-k and bottom-k real images, their per-patch maps and the histogram of
    its activation over the whole dataset.

    Attributes:
        source: the image source (``digits``, a folder, ``hf:NAME``...).
        count: how many images the dataset has (every one was read).
        size: the side S the images were read at (the model's input side).
        k: examples kept per target and side.
        command: the command line that made it.
        targets: each target's key (``layer:unit``, as in a run's ``manifest.csv``), U of them.
        layers: each target's layer.
        top_values, top_indices: ``[U, k]``, the k largest activations (descending) and their
            images' dataset indices; fewer than k columns if the dataset has fewer images.
        bottom_values, bottom_indices: ``[U, k]``, the k smallest (ascending).
        heatmaps: per target key of a unit with patches, ``{"top": [k, gh, gw], "bottom":
            [k, gh, gw]}``: each example's per-patch activation of the unit (class logits have none).
        histogram: ``counts [U, K]`` (int64), ``edges [U, K + 1]``: each target's activation
            over the whole dataset.
        fingerprint: what identifies the pass (targets, weights, source, settings): a rerun of
            the same finds it done.
    """

    source: str
    count: int
    size: int
    k: int
    command: str
    targets: list[str]
    layers: list[str]
    top_values: torch.Tensor
    top_indices: torch.Tensor
    bottom_values: torch.Tensor
    bottom_indices: torch.Tensor
    heatmaps: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    histogram: dict[str, torch.Tensor] = field(default_factory=dict)
    fingerprint: str = ""

    def row(self, key: str) -> int:
        """The position of the target ``key`` (a copy's key ``...#1`` names its target)."""
        try:
            return self.targets.index(key.split("#")[0])
        except ValueError:
            raise FeatvisError(f"no dataset examples for {key!r}: the examples were found for "
                               f"{', '.join(self.targets[:4])}{'...' if len(self.targets) > 4 else ''}") from None

    @staticmethod
    def image_file(index: int) -> str:
        """The example image of dataset index ``index``, relative to the folder."""
        return f"{IMAGES}/{index:06d}.png"

    def save(self, folder: str | Path) -> Path:
        """Write ``examples.pt`` and ``examples.csv`` into ``folder`` (the images are written by
        the pass, :func:`write_images`)."""
        folder = Path(folder)
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, **asdict(self)}, buffer)
        atomic_write(folder / FILE, buffer.getvalue())
        rows = []
        for u, key in enumerate(self.targets):
            for side, values, indices in (("top", self.top_values, self.top_indices),
                                          ("bottom", self.bottom_values, self.bottom_indices)):
                for rank, (value, index) in enumerate(zip(values[u].tolist(), indices[u].tolist())):
                    rows.append(dict(target=key, side=side, rank=rank, index=index, activation=float(value),
                                     file=self.image_file(index)))
        atomic_write_csv(folder / TABLE, ("target", "side", "rank", "index", "activation", "file"), rows)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> DatasetExamples:
        """Read what :meth:`save` wrote into ``folder``."""
        path = Path(folder) / FILE
        if not path.is_file():
            raise FeatvisError(f"{folder} holds no {FILE}: give the --output folder of a finished "
                               "featvis examples run")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - damaged or foreign file: one message
            raise FeatvisError(f"cannot read {path} ({type(err).__name__}): it is damaged or not written by "
                               "featvis examples; run featvis examples again") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise FeatvisError(f"{path} is not a featvis examples file of format {FORMAT}; run featvis examples again")
        state.pop("format")
        return cls(**state)

    def indices(self) -> list[int]:
        """Every dataset index that is some target's example, sorted."""
        return sorted(set(self.top_indices.flatten().tolist()) | set(self.bottom_indices.flatten().tolist()))


def write_images(folder: str | Path, images: dict[int, torch.Tensor]) -> None:
    """Write example images ``{dataset index: [3, S, S] in [0, 1]}`` as ``folder/images/NNNNNN.png``."""
    from torchvision.utils import save_image

    for index, image in images.items():
        buffer = io.BytesIO()
        save_image(image, buffer, format="png")
        atomic_write(Path(folder) / DatasetExamples.image_file(index), buffer.getvalue())
