"""Resuming, all of it: which targets an earlier run of the same config finished (a rerun of
the same command), and where a run stood inside a group (a checkpoint).

Every run writes into a new version folder (``lightning_logs/version_N``), so nothing earlier
is ever overwritten. A run started with the same config as an earlier one (the same command)
finds that run's ``images/manifest.csv`` (a text run's ``text/text.csv``; rows are written as
each group finishes), copies its finished images and rows into its own folder, and renders only
the rest. Canvases are seeded
by each target's own key, so the resumed images are the ones an uninterrupted run would give.

A checkpoint taken inside a group (``ModelCheckpoint``, a step limit, ``--ckpt_path``) holds
the canvases and optimizer state; :class:`RunPosition` adds where in the stream of batches the
run stood, so ``--ckpt_path`` goes on from the next batch of the same group.

The config's identity is :func:`config_fingerprint`: the config without the settings that do
not change any image (the logger, progress bars, devices and strategy, step and time limits,
output-only callbacks).
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

RUN_FILE = "featvis_run.json"
# settings that change where, how fast or how far a run goes, never its images (devices:
# shards are seeded per target, so 1 and N devices give the same images; max_steps/max_time
# stop a run early, as a cluster's time limit would, and the rerun goes on); trainer.callbacks
# are compared below without the output-only ones
NEUTRAL_KEYS = {
    "trainer": {"logger", "enable_progress_bar", "enable_model_summary", "devices", "num_nodes", "strategy",
                "accelerator", "default_root_dir", "callbacks", "max_steps", "max_time"},
    "": {"ckpt_path", "config"},
}
# callbacks that only write outputs
NEUTRAL_CALLBACKS = ("ImageLogger", "ImageWriter", "ReconstructionReport", "TextReport", "AttributionMap",
                     "ModelCheckpoint")


def config_fingerprint(config: dict) -> str:
    """A short hash of ``config`` (a LightningCLI subcommand's config as plain data) without
    the settings that do not change images; callbacks count unless they only write outputs."""
    kept = {k: v for k, v in config.items() if k not in NEUTRAL_KEYS[""]}
    trainer = dict(kept.get("trainer") or {})
    callbacks = [cb for cb in trainer.get("callbacks") or []
                 if not str((cb or {}).get("class_path", "")).endswith(NEUTRAL_CALLBACKS)]
    kept["trainer"] = {k: v for k, v in trainer.items() if k not in NEUTRAL_KEYS["trainer"]}
    kept["trainer"]["callbacks"] = callbacks
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class FinishedTargets:
    """What an earlier run of the same config finished.

    Attributes:
        results_dir: that run's results folder (``images/``, a text run's ``text/``).
        rows: its manifest rows (``target``, ``file``, ...), one per finished target.
    """

    results_dir: Path
    rows: list[dict] = field(default_factory=list)

    @property
    def keys(self) -> set[str]:
        return {row["target"] for row in self.rows}

    def take_over(self, directory: Path, fields: tuple[str, ...]) -> list[dict]:
        """Copy every finished target's file into ``directory`` (atomically) and return its
        rows cut to ``fields`` (missing ones empty), for a resumed run's own table."""
        from lightning_featvis.files import atomic_write

        for row in self.rows:
            atomic_write(directory / row["file"], (self.results_dir / row["file"]).read_bytes())
        return [{k: row.get(k, "") for k in fields} for row in self.rows]


def _version_number(path: Path) -> int:
    suffix = path.name.rpartition("_")[2]
    return int(suffix) if suffix.isdigit() else -1


def find_finished(log_dir: Path, fingerprint: str, dirname: str = "images",
                  manifest: str = "manifest.csv") -> FinishedTargets | None:
    """The newest sibling of ``log_dir`` (``version_*`` folders of the same logger) that ran
    config ``fingerprint`` and finished at least one target; None if there is none.

    Args:
        log_dir: this run's log folder (``version_N``); its siblings are searched.
        fingerprint: the config's identity (:func:`config_fingerprint`).
        dirname: the folder a run keeps its results in (``images``, a text run's ``text``).
        manifest: their table in it (a ``target`` and a ``file`` column): ``manifest.csv``,
            or a text run's ``text.csv``.
    """
    siblings = [p for p in log_dir.parent.glob("version_*") if p.is_dir() and p.resolve() != log_dir.resolve()]
    for run in sorted(siblings, key=_version_number, reverse=True):
        try:
            if json.loads((run / RUN_FILE).read_text()).get("config") != fingerprint:
                continue
        except (OSError, ValueError, AttributeError):
            continue  # not a featvis run (or one that never got going): not this config's
        table = run / dirname / manifest
        if not table.is_file():
            continue  # this config, but nothing finished
        rows = read_table(table)
        if rows is None:
            print(f"featvis: warning: cannot read {table} (damaged?); taking nothing over from that run",
                  file=sys.stderr)
            continue
        rows = [row for row in rows if (run / dirname / row["file"]).is_file()]
        if rows:
            return FinishedTargets(run / dirname, rows)
    return None


def read_table(path: Path) -> list[dict] | None:
    """The rows of a results table (a ``target`` and a ``file`` column, every row complete),
    or None when it cannot be read: unreadable, no such columns, or a row cut short or
    padded (a file truncated or written over by something else)."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if "target" not in fields or "file" not in fields:
        return None
    for row in rows:
        # DictReader fills missing trailing fields with None and keeps extra ones under None
        if None in row or any(value is None for value in row.values()) or not row["target"] or not row["file"]:
            return None
        if Path(row["file"]).name != row["file"]:
            return None  # a file name, never a path out of the results folder
    return rows


def write_run_file(log_dir: Path, fingerprint: str) -> None:
    """Record which config ``log_dir``'s run runs, for later runs to resume from."""
    from lightning_featvis.files import atomic_write

    atomic_write(log_dir / RUN_FILE, json.dumps({"config": fingerprint}).encode())


class RunPosition:
    """Where a run is: the group and octave under way, the last batch begun (its ``position``
    in this rank's stream and its ``step`` in the group) and whether its hooks ended; saved in
    checkpoints and brought back by one.

    Attributes:
        restored: what a checkpoint brought back (None: a fresh run): ``next_position``,
            ``group``, ``octave``, canvas ``size`` and ``end_group`` (the checkpoint was taken
            at a group's last step before the group's results were written).
    """

    KEY = "featvis_position"

    def __init__(self) -> None:
        self.group: int | None = None
        self.octave: int | None = None
        self.position, self.step, self.batch_ended = -1, -1, True
        self.restored: dict | None = None

    @property
    def start(self) -> int:
        """The first batch this run still has to take (0: a fresh run)."""
        return self.restored["next_position"] if self.restored else 0

    def begin_batch(self, position: int, step: int) -> None:
        self.position, self.step, self.batch_ended = position, step, False

    def end_batch(self) -> None:
        self.batch_ended = True

    def group_done(self, last_step: int) -> bool:
        """No group under way: none started, or the last one finished (``last_step``: a
        group's last step)."""
        return self.group is None or (self.step == last_step and self.batch_ended)

    def save(self, checkpoint: dict, size: int, last_step: int) -> None:
        """Record the position in ``checkpoint`` (``size``: the canvas side now)."""
        if self.group is None:
            return
        # ModelCheckpoint saves in the callbacks' on_train_batch_end, before the objective's: a
        # checkpoint taken at a group's last step must still measure and write that group
        checkpoint[self.KEY] = {
            "next_position": self.position + 1,
            "group": self.group,
            "octave": self.octave,
            "size": size,
            "end_group": not self.batch_ended and self.step == last_step,
        }

    def load(self, checkpoint: dict) -> dict | None:
        """Take the position back from ``checkpoint``; returns it (None: none saved)."""
        self.restored = checkpoint.get(self.KEY)
        return self.restored

    def take_up(self) -> dict | None:
        """The first batch after a checkpoint: the restored group and octave become the ones
        under way; returns what was restored, or None when there is nothing to take up."""
        if self.restored is None or self.group is not None:
            return None
        self.group, self.octave = self.restored["group"], self.restored["octave"]
        return self.restored
