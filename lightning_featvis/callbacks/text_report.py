"""Per-run report of sentence reconstruction: a CSV table, the embeddings, TensorBoard text and scalars."""

from __future__ import annotations

import io
from pathlib import Path

import lightning as L
import torch

from lightning_featvis.callbacks.image_logger import tensorboard_writers
from lightning_featvis.errors import FeatvisError
from lightning_featvis.files import atomic_write, atomic_write_csv


class TextReport(L.Callback):
    """Writes what every finished text target recovered (see ``TextReconstructionObjective.report``)
    into ``<log_dir>/<dirname>``, updated as each group finishes:

    - ``text.csv``: one row per target in config order (target, layer, unit, the sentence, the
      recovered text by pinv and by cosine, token recovery, top-k candidates, the criterion's
      distances and verdict, next tokens and whether they agree);
    - ``embeddings.pt``: ``{target key: final embeddings [L, D]}``, to decode or reuse later.

    To TensorBoard (rank 0): per target, text ``<model>/text/<target key>`` (the sentence, what
    came back and the top-k table); scalars ``<model>/text/{token_recovery,accurate,
    next_token_agrees}`` whose step is the target's position in the config (a curve over
    depth when the config lists the blocks in order); and the whole table as text
    ``<model>/text/table``.

    Args:
        dirname: folder inside the Trainer's log directory.
    """

    FIELDS = ("target", "layer", "unit", "sentence", "recovered", "recovered_cosine", "token_recovery",
              "token_recovery_cosine", "top_k", "distance", "noise_distance", "accurate", "next_token",
              "next_token_recovered", "next_token_agrees")

    def __init__(self, dirname: str = "text") -> None:
        self.dirname = dirname
        self.rows: dict[int, dict] = {}  # by the target's position in the config
        self.embeddings: dict[str, torch.Tensor] = {}
        self.directory: Path | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        if not hasattr(pl_module, "report"):
            raise FeatvisError(f"TextReport reports sentence reconstructions; {type(pl_module).__name__} is not a "
                               "TextReconstructionObjective (remove the callback or change the model class)")
        self.directory = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname
        self.rows, self.embeddings = {}, {}

    def on_target_group_end(self, trainer, pl_module, result) -> None:
        if not trainer.is_global_zero:
            return
        order = {t.key: i for i, t in enumerate(trainer.datamodule.targets)}
        model = pl_module.network.name
        writers = tensorboard_writers(trainer)
        for target, e_g, row in zip(result.targets, result.images, pl_module.report(result.images, result.targets)):
            position = order[target.key]
            self.rows[position] = dict(target=target.key, layer=target.layer, unit=target.unit.name, **row)
            self.embeddings[target.key] = e_g[: len(pl_module.sentence_ids[target.sentence])].clone()
            for writer in writers:
                writer.add_text(f"{model}/text/{target.key}", self._describe(row), trainer.global_step)
                for name in ("token_recovery", "accurate", "next_token_agrees"):
                    if row[name] != "":
                        writer.add_scalar(f"{model}/text/{name}", float(row[name]), position)
        self._write(writers, model, trainer.global_step)

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

    def _write(self, writers: list, model: str, step: int) -> None:
        rows = [self.rows[i] for i in sorted(self.rows)]
        atomic_write_csv(self.directory / "text.csv", self.FIELDS,
                         ({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows))
        buffer = io.BytesIO()
        torch.save(self.embeddings, buffer)
        atomic_write(self.directory / "embeddings.pt", buffer.getvalue())
        table = "| target | recovered | token recovery | accurate | next token agrees |\n|---|---|---|---|---|\n" + "".join(
            f"| {r['target']} | {r['recovered'].replace('|', '/')} | {r['token_recovery']:.2f} | {r['accurate']} | "
            f"{r['next_token_agrees']} |\n" for r in rows)
        for writer in writers:
            writer.add_text(f"{model}/text/table", table, step)
            writer.flush()
