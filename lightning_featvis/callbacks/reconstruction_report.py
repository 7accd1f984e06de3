"""Per-layer reconstruction fidelity: a CSV table, TensorBoard scalars and a grid over depth."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from lightning_featvis.callbacks.image_logger import tensorboard_writers
from lightning_featvis.callbacks.roles import GroupResultHook
from lightning_featvis.errors import FeatvisError
from lightning_featvis.files import atomic_write, atomic_write_csv
from lightning_featvis.targets import Target


class MeasuresFidelity(ABC):
    """What :class:`ReconstructionReport` reads of its objective (a
    :class:`~lightning_featvis.objectives.ReconstructionObjective`).

    Attributes:
        photo: the target photo ``[1, C, s, s]`` in [0, 1].
    """

    photo: torch.Tensor

    @abstractmethod
    def fidelity(self, views: torch.Tensor, targets: list[Target]) -> list[dict[str, float]]:
        """One row per reconstruction ``views`` ``[N, C, s, s]`` (model-sized, in [0, 1]):
        ``psnr``, ``ssim``, ``distance``, ``noise_distance``, ``accurate``."""


class ReconstructionReport(GroupResultHook):
    """Measures every finished reconstruction (see ``ReconstructionObjective.fidelity``) and
    writes, into ``<log_dir>/<dirname>``, updated as each group finishes:

    - ``reconstruction.csv``: one row per target in the order the config lists them
      (target, layer, unit, psnr, ssim, distance, noise_distance, accurate);
    - ``reconstruction_grid.png``: the target photo followed by each reconstruction in the same
      order, so a config listing every block gives one grid over depth.

    To TensorBoard (rank 0): scalars ``<model>/reconstruction/{psnr,ssim,accurate}`` whose step
    is the target's position in the config (a curve over depth), the grid as image
    ``<model>/reconstruction/grid`` and the table as text ``<model>/reconstruction/table``.

    Args:
        dirname: folder inside the Trainer's log directory (the PNGs' folder by default).
        nrow: images per grid row (default: all in one row, up to 14).
    """

    FIELDS = ("target", "layer", "unit", "psnr", "ssim", "distance", "noise_distance", "accurate")

    def __init__(self, dirname: str = "images", nrow: int | None = None) -> None:
        self.dirname, self.nrow = dirname, nrow
        self.rows: dict[int, dict] = {}  # by the target's position in the config
        self.images: dict[int, torch.Tensor] = {}
        self.directory: Path | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        if not isinstance(pl_module, MeasuresFidelity):
            raise FeatvisError(
                f"ReconstructionReport measures reconstructions; {type(pl_module).__name__} is not a "
                "ReconstructionObjective (remove the callback or change the model class)"
            )
        self.directory = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname
        self.rows, self.images = {}, {}

    def on_target_group_end(self, trainer, pl_module, result) -> None:
        if not trainer.is_global_zero:
            return
        order = pl_module.plan.order()
        # the measured image is the model-sized centre view of each canvas, as in the group's result
        views = pl_module.param.views(result.images, centred=True)
        for target, view, row in zip(result.targets, views, pl_module.fidelity(views.to(pl_module.device), result.targets)):
            position = order[target.key]
            self.images[position] = view
            self.rows[position] = dict(target=target.key, layer=target.layer, unit=target.description, **row)
            for writer in tensorboard_writers(trainer):
                for name in ("psnr", "ssim", "accurate"):
                    writer.add_scalar(f"{pl_module.network.name}/reconstruction/{name}", float(row[name]), position)
        self._write(trainer, pl_module)

    def _write(self, trainer, pl_module) -> None:
        rows = [self.rows[i] for i in sorted(self.rows)]
        atomic_write_csv(self.directory / "reconstruction.csv", self.FIELDS, rows)

        photo = pl_module.photo.cpu().to(self.images[min(self.images)].dtype)
        images = torch.cat([photo, torch.stack([self.images[i] for i in sorted(self.images)])])
        grid = make_grid(images, nrow=self.nrow or min(len(images), 14), padding=2, pad_value=1.0)
        buffer = io.BytesIO()
        save_image(grid, buffer, format="png")
        atomic_write(self.directory / "reconstruction_grid.png", buffer.getvalue())

        model = pl_module.network.name
        table = "| target | PSNR (dB) | SSIM | accurate |\n|---|---|---|---|\n" + "".join(
            f"| {r['target']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['accurate']} |\n" for r in rows
        )
        for tb in tensorboard_writers(trainer):
            tb.add_image(f"{model}/reconstruction/grid", grid, trainer.global_step)
            tb.add_text(f"{model}/reconstruction/table", table, trainer.global_step)
            tb.flush()
