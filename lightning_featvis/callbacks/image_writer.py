"""PNG files for finished targets, written as each group finishes, with a manifest."""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
from torchvision.utils import save_image

from lightning_featvis.files import atomic_write, atomic_write_csv


class ImageWriter(L.Callback):
    """Writes one PNG per target, ``<layer>__<unit>.png`` (the whole canvas), and
    ``manifest.csv`` (target, layer, unit, file, final activation and loss) into
    ``<log_dir>/<dirname>`` as soon as each group finishes. Rank 0 writes for all ranks.
    A resumed run (``TargetDataModule.finished``) first copies the earlier run's finished
    images and rows, so every run's folder holds the whole sweep.

    Args:
        dirname: folder inside the Trainer's log directory.
    """

    FIELDS = ("target", "layer", "unit", "file", "activation", "loss")

    def __init__(self, dirname: str = "images") -> None:
        self.dirname = dirname
        self.rows: list[dict] = []
        self.directory: Path | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        # every rank asks (log_dir broadcasts from rank 0); only rank 0 writes
        self.directory = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname
        self.rows = []
        finished = getattr(trainer.datamodule, "finished", None)
        if finished is None or not trainer.is_global_zero:
            return
        for row in finished.rows:
            atomic_write(self.directory / row["file"], (finished.images_dir / row["file"]).read_bytes())
            self.rows.append({k: row.get(k, "") for k in self.FIELDS})
        atomic_write_csv(self.directory / "manifest.csv", self.FIELDS, self.rows)

    def on_target_group_end(self, trainer, pl_module, result) -> None:
        if not trainer.is_global_zero:
            return
        new = {target.key for target in result.targets}
        # a run resumed from a checkpoint may render again what it took over: the new row wins
        self.rows = [row for row in self.rows if row["target"] not in new]
        for target, image, activation, loss in zip(result.targets, result.images, result.activations, result.losses):
            name = f"{target.file_stem}.png"
            buffer = io.BytesIO()
            save_image(image, buffer, format="png")
            atomic_write(self.directory / name, buffer.getvalue())
            self.rows.append(
                dict(target=target.key, layer=target.layer, unit=target.unit.name, file=name,
                     activation=f"{float(activation):.6g}", loss=f"{float(loss):.6g}")
            )
        atomic_write_csv(self.directory / "manifest.csv", self.FIELDS, self.rows)
