"""Per-run report of sentence reconstruction: a CSV table, each target's embeddings, TensorBoard
text and scalars."""

from __future__ import annotations

import io
import sys
from abc import ABC, abstractmethod
from pathlib import Path

import torch

from lightning_featvis.callbacks.image_logger import tensorboard_writers
from lightning_featvis.callbacks.image_writer import (
    done_message,
    kept_on_write_failure,
    logger_dir,
    stop_message,
)
from lightning_featvis.callbacks.roles import GroupResultHook
from lightning_featvis.errors import FeatvisError, WriteError
from lightning_featvis.files import atomic_write, atomic_write_csv
from lightning_featvis.targets import Target


class ReportsText(ABC):
    """What :class:`TextReport` reads of its objective (a
    :class:`~lightning_featvis.objectives.TextReconstructionObjective`)."""

    @abstractmethod
    def report(self, embeddings: torch.Tensor, targets: list[Target]) -> list[dict]:
        """One row per target (the fields of :attr:`TextReport.FIELDS` after ``file``) from its
        final embeddings ``[N, T, D]``."""

    @abstractmethod
    def token_count(self, target: Target) -> int:
        """How many token positions of the input are ``target``'s own sentence."""


class TextReport(GroupResultHook):
    """Writes what every finished text target recovered (see ``TextReconstructionObjective.report``)
    into ``<log_dir>/<dirname>``, updated as each group finishes:

    - ``text.csv``: one row per target in config order (target, layer, unit, its embeddings'
      file, the sentence, the recovered text by pinv and by cosine, token recovery, top-k
      candidates, the criterion's distances and verdict, next tokens and whether they agree);
    - ``<layer>__<unit>__sentence<i>.pt``: each target's final embeddings ``[L, D]``
      (``torch.load``), to decode or reuse later.

    A rerun of the same config (``TargetDataModule.resume``) first takes over the finished
    targets' rows and files of the earlier run, as ``ImageWriter`` does for images.

    To TensorBoard (rank 0): per target, text ``<model>/text/<target key>`` (the sentence, what
    came back and the top-k table); scalars ``<model>/text/{token_recovery,accurate,
    next_token_agrees}`` whose step is the target's position in the config (a curve over
    depth when the config lists the blocks in order); and the whole table as text
    ``<model>/text/table``.

    Args:
        dirname: folder inside the Trainer's log directory.
    """

    FIELDS = ("target", "layer", "unit", "file", "sentence", "recovered", "recovered_cosine", "token_recovery",
              "token_recovery_cosine", "top_k", "distance", "noise_distance", "accurate", "next_token",
              "next_token_recovered", "next_token_agrees")

    def __init__(self, dirname: str = "text") -> None:
        self.dirname = dirname
        self.rows: dict[int, dict] = {}  # by the target's position in the config
        self.directory: Path | None = None
        self.log_dir: str | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        if not isinstance(pl_module, ReportsText):
            raise FeatvisError(f"TextReport reports sentence reconstructions; {type(pl_module).__name__} is not a "
                               "TextReconstructionObjective (remove the callback or change the model class)")
        self.log_dir = logger_dir(trainer)
        self.directory = Path(self.log_dir or trainer.default_root_dir) / self.dirname
        self.rows = {}
        finished = pl_module.plan.finished
        if finished is None or not trainer.is_global_zero:
            return
        order = pl_module.plan.order()
        self.rows = {order[row["target"]]: row for row in finished.take_over(self.directory, self.FIELDS)}
        self._write_table()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not trainer.is_global_zero or self.directory is None or isinstance(exception, FeatvisError) or not self.rows:
            return  # bad input: the error itself is the whole message; nothing finished: nothing to say
        where = f"{len(self.rows)} finished targets' rows and embeddings are in {self.directory}"
        print(stop_message(exception, where), file=sys.stderr)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            print(done_message(f"{len(self.rows)} targets in {self.directory / 'text.csv'}, their embeddings "
                               "beside it", self.log_dir), file=sys.stderr)

    def on_target_group_end(self, trainer, pl_module, result) -> None:
        if not trainer.is_global_zero:
            return
        finished = len(self.rows)  # what text.csv on disk holds until this group's table is written
        try:
            self.write_group(trainer, pl_module, result)
        except WriteError as err:
            raise kept_on_write_failure(err, finished, f"rows and embeddings in {self.directory}") from err

    def write_group(self, trainer, pl_module, result) -> None:
        """Write a finished group's embeddings, rows and TensorBoard summaries."""
        order = pl_module.plan.order()
        model = pl_module.network.name
        writers = tensorboard_writers(trainer)
        for target, e_g, row in zip(result.targets, result.images, pl_module.report(result.images, result.targets)):
            position = order[target.key]
            name = f"{target.file_stem}.pt"
            buffer = io.BytesIO()
            torch.save(e_g[: pl_module.token_count(target)].clone(), buffer)
            atomic_write(self.directory / name, buffer.getvalue())
            self.rows[position] = dict(target=target.key, layer=target.layer, unit=target.description, file=name, **row)
            for writer in writers:
                writer.add_text(f"{model}/text/{target.key}", self._describe(row), trainer.global_step)
                for metric in ("token_recovery", "accurate", "next_token_agrees"):
                    if row[metric] != "":
                        writer.add_scalar(f"{model}/text/{metric}", float(row[metric]), position)
        self._write_table()
        table = "| target | recovered | token recovery | accurate | next token agrees |\n|---|---|---|---|---|\n" + "".join(
            f"| {r['target']} | {r['recovered'].replace('|', '/')} | {float(r['token_recovery']):.2f} | {r['accurate']} | "
            f"{r['next_token_agrees']} |\n" for r in (self.rows[i] for i in sorted(self.rows)))
        for writer in writers:
            writer.add_text(f"{model}/text/table", table, trainer.global_step)
            writer.flush()

    @staticmethod
    def _describe(row: dict) -> str:
        """Markdown for one target (TensorBoard renders text summaries as Markdown)."""
        positions = row["top_k"].split(" | ")
        table = "| position | candidates |\n|---|---|\n" + "".join(
            f"| {i} | {c.replace('|', '/')} |\n" for i, c in enumerate(positions))
        agrees = "" if row["next_token_agrees"] == "" else (
            f"\n\nnext token: `{row['next_token']}` (sentence) vs `{row['next_token_recovered']}` (recovered)")
        return (f"sentence: `{row['sentence']}`\n\nrecovered: `{row['recovered']}`\n\n"
                f"token recovery {row['token_recovery']:.2f}; accurate: {row['accurate']}{agrees}\n\n{table}")

    def _write_table(self) -> None:
        rows = [self.rows[i] for i in sorted(self.rows)]
        atomic_write_csv(self.directory / "text.csv", self.FIELDS, rows)
