"""PNG files for finished targets, written as each group finishes, with a manifest."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import lightning as L
from torchvision.utils import save_image

from lightning_featvis.errors import FeatvisError
from lightning_featvis.files import atomic_write, atomic_write_csv


def stop_message(exception: BaseException, where: str) -> str:
    """What a run stopped by ``exception`` tells the user: why, ``where`` its results are, and
    that rerunning the same command finishes the rest."""
    interrupted = isinstance(exception, (KeyboardInterrupt, SystemExit))
    reason = "interrupted" if interrupted else f"stopped by {type(exception).__name__}"
    return f"featvis: {reason}: {where}. Run the same command again to finish the rest."


class ImageWriter(L.Callback):
    """Writes one PNG per target, ``<layer>__<unit>.png`` (the whole canvas), and
    ``manifest.csv`` (target, layer, unit, file, final activation and loss, and ``status``:
    ``ok`` or why the target stopped early, e.g. ``non-finite loss at step 12``) into
    ``<log_dir>/<dirname>`` as soon as each group finishes. Rank 0 writes for all ranks.
    A resumed run (``TargetDataModule.finished``) first copies the earlier run's finished
    images and rows, so every run's folder holds the whole sweep.

    When a run stops on an exception (Ctrl-C, SIGTERM, an error), the finished images and
    ``manifest.csv`` are already on disk; the group under way is written to ``partial/``
    (its current canvases and a ``manifest.csv`` with the step each reached), and stays out of
    the main manifest, so rerunning the same command renders it again.

    Args:
        dirname: folder inside the Trainer's log directory.
    """

    FIELDS = ("target", "layer", "unit", "file", "activation", "loss", "status")

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
        self.rows = finished.take_over(self.directory, self.FIELDS)
        atomic_write_csv(self.directory / "manifest.csv", self.FIELDS, self.rows)

    PARTIAL_FIELDS = ("target", "layer", "unit", "file", "step")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not trainer.is_global_zero or self.directory is None or isinstance(exception, FeatvisError):
            return  # bad input: the error itself is the whole message, nothing was rendered
        under_way = getattr(pl_module, "unfinished_group", lambda: None)()
        if not self.rows and under_way is None:
            return
        where = f"{len(self.rows)} finished images and manifest.csv are in {self.directory}"
        if under_way is not None:
            targets, images, step = under_way
            partial = self.directory / "partial"
            rows = []
            for target, image in zip(targets, images):
                name = self.write_png(partial, target, image)
                rows.append(dict(target=target.key, layer=target.layer, unit=target.unit.name, file=name, step=step))
            atomic_write_csv(partial / "manifest.csv", self.PARTIAL_FIELDS, rows)
            where += f"; the {len(rows)} unfinished ones, as they were at step {step}, in {partial}"
        print(stop_message(exception, where), file=sys.stderr)

    @staticmethod
    def write_png(folder: Path, target, image) -> str:
        """Write ``image`` ``[C, S, S]`` in [0, 1] as ``folder/<layer>__<unit>.png`` (atomically);
        return the file name."""
        name = f"{target.file_stem}.png"
        buffer = io.BytesIO()
        save_image(image, buffer, format="png")
        atomic_write(folder / name, buffer.getvalue())
        return name

    def on_target_group_end(self, trainer, pl_module, result) -> None:
        if not trainer.is_global_zero:
            return
        new = {target.key for target in result.targets}
        # a run resumed from a checkpoint may render again what it took over: the new row wins
        self.rows = [row for row in self.rows if row["target"] not in new]
        notes = result.notes or [""] * len(result.targets)
        for target, image, activation, loss, note in zip(result.targets, result.images, result.activations,
                                                         result.losses, notes):
            name = self.write_png(self.directory, target, image)
            self.rows.append(
                dict(target=target.key, layer=target.layer, unit=target.unit.name, file=name,
                     activation=f"{float(activation):.6g}", loss=f"{float(loss):.6g}", status=note or "ok")
            )
        atomic_write_csv(self.directory / "manifest.csv", self.FIELDS, self.rows)
