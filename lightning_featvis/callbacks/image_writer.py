"""PNG files for finished targets, written as each group finishes, with a manifest."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from torchvision.utils import save_image

from lightning_featvis.callbacks.roles import GroupResultHook
from lightning_featvis.errors import FeatvisError, WriteError
from lightning_featvis.files import atomic_write, atomic_write_csv


def stop_message(exception: BaseException, where: str) -> str:
    """What a run stopped by ``exception`` tells the user: why, ``where`` its results are, and
    that rerunning the same command finishes the rest."""
    interrupted = isinstance(exception, (KeyboardInterrupt, SystemExit))
    reason = "interrupted" if interrupted else f"stopped by {type(exception).__name__}"
    return f"featvis: {reason}: {where}. Run the same command again to finish the rest."


def done_message(results: str, log_dir: str | Path | None) -> str:
    """What a finished run tells the user: where its ``results`` are (e.g. ``16 images and
    manifest.csv in .../images``) and its TensorBoard log (``log_dir``; None: no logger)."""
    if log_dir is None:
        return f"featvis: done: {results}"
    return f"featvis: done: {results}; TensorBoard log in {log_dir} (tensorboard --logdir {Path(log_dir).parent})"


def logger_dir(trainer) -> str | None:
    """The Trainer's log folder if it has a logger. Call it on every rank (it broadcasts from
    rank 0), early: a collective at the very end of a run can race the workers' teardown."""
    log_dir = trainer.log_dir
    return log_dir if trainer.logger is not None else None


def kept_on_write_failure(error: WriteError, finished: int, kept: str) -> WriteError:
    """``error`` extended by what is intact (``finished`` targets' ``kept``, e.g. ``images and
    manifest.csv in <folder>``) and what to do."""
    intact = f"the {finished} finished targets' {kept} are intact" if finished else "no target had finished"
    return WriteError(error.path, error.reason, f"{intact}; free space or choose a writable "
                      "--trainer.default_root_dir, then run the same command again")


class ImageWriter(GroupResultHook):
    """Writes one PNG per target, ``<layer>__<unit>.png`` (the whole canvas), and
    ``manifest.csv`` (target, layer, unit, file, final activation and loss, and ``status``:
    ``ok`` or why the target stopped early, e.g. ``non-finite loss at step 12``) into
    ``<log_dir>/<dirname>`` as soon as each group finishes. Rank 0 writes for all ranks.
    A resumed run (``RunPlan.finished``) first copies the earlier run's finished
    images and rows, so every run's folder holds the whole sweep.

    When a run stops on an exception (Ctrl-C, SIGTERM, an error) or on the Trainer's limits
    inside a group (``max_steps``, ``max_time``), the finished images and
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
        self.log_dir: str | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        # every rank asks (log_dir broadcasts from rank 0); only rank 0 writes
        self.log_dir = logger_dir(trainer)
        self.directory = Path(self.log_dir or trainer.default_root_dir) / self.dirname
        self.rows = []
        finished = pl_module.plan.finished
        if finished is None or not trainer.is_global_zero:
            return
        self.rows = finished.take_over(self.directory, self.FIELDS)
        atomic_write_csv(self.directory / "manifest.csv", self.FIELDS, self.rows)

    PARTIAL_FIELDS = ("target", "layer", "unit", "file", "step")

    def on_fit_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        # a limit (max_steps, max_time) can end the run inside a group: keep what it has
        unfinished = self.write_partial(pl_module)
        message = done_message(self.describe(), self.log_dir)
        if unfinished:
            message += f"; the Trainer's limits stopped the run inside a group: {unfinished}"
        print(message, file=sys.stderr)

    def describe(self) -> str:
        """``16 images and manifest.csv in <folder>`` (with the folder's other tables)."""
        tables = sorted(p.name for p in self.directory.glob("*.csv")) if self.directory.is_dir() else []
        return f"{len(self.rows)} images and {', '.join(tables) or 'no table'} in {self.directory}"

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not trainer.is_global_zero or self.directory is None or isinstance(exception, FeatvisError):
            # bad input: the error itself is the whole message, nothing was rendered; a refused
            # write: its message says what was kept, and writing more would fail again
            return
        if not self.rows and pl_module.unfinished_group() is None:
            return
        where = f"{len(self.rows)} finished images and manifest.csv are in {self.directory}"
        unfinished = self.write_partial(pl_module)
        if unfinished:
            where += f"; {unfinished}"
        print(stop_message(exception, where), file=sys.stderr)

    def write_partial(self, pl_module) -> str | None:
        """Write the group under way, as it is, to ``partial/`` (its canvases and a
        ``manifest.csv`` with the step each reached); say where, or None if no group is under way."""
        under_way = pl_module.unfinished_group()
        if under_way is None:
            return None
        targets, images, step = under_way
        partial = self.directory / "partial"
        rows = []
        for target, image in zip(targets, images):
            name = self.write_png(partial, target, image)
            rows.append(dict(target=target.key, layer=target.layer, unit=target.description, file=name, step=step))
        atomic_write_csv(partial / "manifest.csv", self.PARTIAL_FIELDS, rows)
        return f"the {len(rows)} unfinished ones, as they were at step {step}, in {partial}"

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
        try:
            self.write_group(result)
        except WriteError as err:
            raise kept_on_write_failure(err, len(self.rows), f"images and manifest.csv in {self.directory}") from err

    def write_group(self, result) -> None:
        """Write a finished group's PNGs and the manifest with their rows."""
        new = {target.key for target in result.targets}
        # a run resumed from a checkpoint may render again what it took over: the new row wins
        rows = [row for row in self.rows if row["target"] not in new]
        notes = result.notes or [""] * len(result.targets)
        for target, image, activation, loss, note in zip(result.targets, result.images, result.activations,
                                                         result.losses, notes):
            name = self.write_png(self.directory, target, image)
            rows.append(
                dict(target=target.key, layer=target.layer, unit=target.description, file=name,
                     activation=f"{float(activation):.6g}", loss=f"{float(loss):.6g}", status=note or "ok")
            )
        atomic_write_csv(self.directory / "manifest.csv", self.FIELDS, rows)
        self.rows = rows  # only now: the rows are what manifest.csv on disk holds
