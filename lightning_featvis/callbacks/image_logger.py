"""TensorBoard image summaries: progress grids every N steps and each target's final image."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from lightning_featvis.callbacks.roles import GroupResultHook


def tensorboard_writers(trainer: L.Trainer) -> list:
    """The SummaryWriters of the Trainer's TensorBoard loggers, on rank 0 only (elsewhere
    ``TensorBoardLogger.experiment`` is a dummy)."""
    if not trainer.is_global_zero:
        return []
    return [logger.experiment for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]


class ImageLogger(GroupResultHook):
    """Logs images to every TensorBoard logger of the Trainer (rank 0 only).

    Tags: ``<model>/progress`` (a grid of the current group's canvases every
    ``every_n_steps``), ``<model>/<layer>/<unit>`` (each target's final image) and
    ``<model>/final`` (a grid of each finished group).

    Args:
        every_n_steps: progress-grid period in optimizer steps (0: final images only).
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.every_n_steps or batch["step"] % self.every_n_steps:
            return
        writers = tensorboard_writers(trainer)
        if writers:
            grid = make_grid(pl_module.param().detach().clamp(0, 1).float().cpu(), nrow=8, padding=2)
            for writer in writers:
                writer.add_image(f"{pl_module.network.name}/progress", grid, trainer.global_step)

    def on_target_group_end(self, trainer, pl_module, result) -> None:
        writers = tensorboard_writers(trainer)
        model = pl_module.network.name
        for writer in writers:
            writer.add_image(f"{model}/final", make_grid(result.images, nrow=8, padding=2), trainer.global_step)
            for target, image in zip(result.targets, result.images):
                where = f"{target.layer or 'output'}/{target.unit.name}" if not target.terms else f"sum/{target.description}"
                copy = f"/image{target.copy}" if target.copy else ""  # a target's further images
                writer.add_image(f"{model}/{where}{copy}", image, trainer.global_step)
            writer.flush()
