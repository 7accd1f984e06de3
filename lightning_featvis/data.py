"""Targets as data: which units to visualise, grouped into optimizer steps, sharded over ranks.

A run visualises a list of *targets* (a layer and a unit). Targets are cut into groups of
``group_size``; a group's canvases are optimised together, one optimizer step per batch, for
the objective's number of steps. Each target's canvas is seeded by the target's own key, so
results do not depend on how targets are grouped or on how many ranks run them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from lightning_featvis.errors import FeatvisError
from lightning_featvis.resume import FinishedTargets, find_finished, write_run_file
from lightning_featvis.units import Unit, parse_units


@dataclass(frozen=True)
class Target:
    """One input to generate: a unit of a layer (``layer=None``: the objective's default) and,
    for text runs, which of the run's sentences it reconstructs (``sentence``, an index into
    :attr:`SentenceTargets.sentences`)."""

    layer: str | None
    unit: Unit
    sentence: int | None = None

    @property
    def key(self) -> str:
        """Stable identity (seeds the canvas and jitter), e.g. ``encoder.layers.encoder_layer_3:neuron5``
        or, with a sentence, ``transformer.h.0:all@2``."""
        suffix = "" if self.sentence is None else f"@{self.sentence}"
        return f"{self.layer or ''}:{self.unit.name}{suffix}"

    @property
    def file_stem(self) -> str:
        """File name without extension, e.g. ``encoder.layers.encoder_layer_3__neuron5`` (with a
        sentence: ``transformer.h.0__all__sentence2``)."""
        suffix = "" if self.sentence is None else f"__sentence{self.sentence}"
        return f"{self.layer or 'output'}__{self.unit.name}{suffix}"


def parse_targets(
    specs: str | list[str],
    unit_sizes: Callable[[str], dict[str, int]] | None = None,
    default_layer: str | None = None,
) -> list[Target]:
    """Expand target specifications ``[layer:]unit`` into targets.

    ``"heads.head:class=0-9"`` gives ten targets; ``"neuron=0-15"`` gives sixteen on the
    objective's default layer. See :mod:`lightning_featvis.units` for the unit grammar.

    Args:
        unit_sizes: a layer's sizes for ``*`` (``neuron=*``: every neuron), e.g.
            :meth:`VisualizationObjective.unit_sizes`; asked only for specs that use ``*``.
        default_layer: the layer of specs that name none, for their ``*``.
    """
    if isinstance(specs, str):
        specs = [specs]
    targets = []
    for spec in specs:
        layer, sep, unit_spec = str(spec).rpartition(":")
        layer = layer if sep else None
        sized = layer if layer is not None else default_layer  # "" is the network's output
        sizes = None
        if "*" in unit_spec and unit_sizes is not None and sized is not None:
            sizes = unit_sizes(sized)
        targets += [Target(layer, unit) for unit in parse_units(unit_spec, sizes)]
    if not targets:
        raise FeatvisError("no targets given; e.g. targets: ['neuron=0-15'] or ['heads.head:class=0-9']")
    keys = [t.key for t in targets]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise FeatvisError(f"targets repeat: {', '.join(dup)}")
    return targets


@dataclass(frozen=True)
class TargetGroup:
    """Targets optimised together; ``None`` pads a short group. ``index`` -1: padding only."""

    index: int
    targets: tuple[Target | None, ...]


class GroupSteps(IterableDataset):
    """Yields one batch per optimizer step: ``{"group": int, "step": int, "targets": tuple,
    "position": int}`` (position: the batch's index in this rank's whole stream), from batch
    ``start`` on (a run resumed from a checkpoint skips the steps it already took)."""

    def __init__(self, groups: list[TargetGroup], steps: int, start: int = 0) -> None:
        self.groups, self.steps, self.start = groups, steps, start

    def __iter__(self):
        for position in range(self.start, len(self)):
            group = self.groups[position // self.steps]
            yield {"group": group.index, "step": position % self.steps, "targets": group.targets, "position": position}

    def __len__(self) -> int:
        return len(self.groups) * self.steps


class TargetDataModule(L.LightningDataModule):
    """The targets of a run, in groups, this rank's share only.

    Args:
        targets: target specifications ``[layer:]unit`` (see :func:`parse_targets`).
        group_size: targets optimised together in one batch.
        resume: skip the targets that an earlier run of the same config finished, taking
            their images over (:mod:`lightning_featvis.resume`); needs a logger (versioned
            folders) and :attr:`run_fingerprint`, which ``featvis`` sets from the config.
    """

    def __init__(self, targets: list[str] | str = "neuron=0", group_size: int = 16, resume: bool = True) -> None:
        super().__init__()
        self.specs, self.requested_group_size, self.resume = targets, group_size, resume
        self.targets: list[Target] = []
        self.group_size = 0
        self.groups: list[TargetGroup] = []
        self.run_fingerprint: str | None = None
        self.finished: FinishedTargets | None = None

    def parse(self, unit_sizes: Callable[[str], dict[str, int]] | None = None, default_layer: str | None = None) -> None:
        """Read the target specifications (in setup: the CLI's parser would wrap errors here);
        ``unit_sizes`` and ``default_layer`` as :func:`parse_targets` takes them."""
        if self.requested_group_size < 1:
            raise FeatvisError(f"group_size must be >= 1, got {self.requested_group_size}")
        self.targets = self.expand(parse_targets(self.specs, unit_sizes, default_layer))
        self.group_size = max(1, min(self.requested_group_size, len(self.targets)))

    def expand(self, targets: list[Target]) -> list[Target]:
        """The run's targets from the parsed specifications (all of them, as they are)."""
        return targets

    def resolve_layers(self, default_layer: str | None) -> None:
        """Give targets without a layer the objective's default layer."""
        if default_layer is None and any(t.layer is None for t in self.targets):
            raise FeatvisError("targets name no layer and the objective has no default layer: set model.layer")
        self.targets = [t if t.layer is not None else replace(t, layer=default_layer) for t in self.targets]

    def make_groups(self) -> list[TargetGroup]:
        """Every group of the run, padded to ``group_size``."""
        size = self.group_size
        groups = []
        for index in range(math.ceil(len(self.targets) / size)):
            chunk = self.targets[index * size : (index + 1) * size]
            groups.append(TargetGroup(index, tuple(chunk) + (None,) * (size - len(chunk))))
        return groups

    def setup(self, stage: str) -> None:
        objective = self.trainer.lightning_module
        default_layer = getattr(objective, "default_layer", None)
        self.parse(getattr(objective, "unit_sizes", None), default_layer)
        self.resolve_layers(default_layer)
        self.groups = self.make_groups()
        self.find_finished()

    def find_finished(self) -> None:
        """Resume: find what an earlier run of this config finished (:attr:`finished`, whose
        images the image writer takes over) and record this run's config. Groups are cut from
        every target either way, so group numbers (and checkpoints' positions) never change;
        :meth:`rank_groups` leaves finished groups out."""
        self.finished = None
        log_dir = self.trainer.log_dir
        if not self.resume or self.run_fingerprint is None or self.trainer.logger is None or log_dir is None:
            return
        # rank 0 reads (other nodes may not share its disk) and tells every rank, so all ranks
        # leave out the same groups
        where = getattr(self.trainer.lightning_module, "results_table", ("images", "manifest.csv"))
        found = find_finished(Path(log_dir), self.run_fingerprint, *where) if self.trainer.is_global_zero else None
        finished = self.trainer.strategy.broadcast(found)
        if finished is not None:
            wanted = {t.key for t in self.targets}
            finished.rows = [row for row in finished.rows if row["target"] in wanted]
            self.finished = finished
            if self.trainer.is_global_zero:  # a featvis line, like the others: stderr, whatever logging says
                print(f"featvis: resuming: {len(finished.rows)} targets finished by {finished.results_dir.parent}, "
                      f"{len(wanted - finished.keys)} to go", file=sys.stderr)
        if self.trainer.is_global_zero:
            write_run_file(Path(log_dir), self.run_fingerprint)

    def remaining_groups(self) -> list[TargetGroup]:
        """The groups still to render: all of them, or (resuming by manifest) those with a
        target the earlier run did not finish. Groups finish whole, so with the same config
        (same targets and group size) a group is either finished or not started. A run
        restored from a checkpoint keeps them all: its position counts every group."""
        restored = getattr(self.trainer.lightning_module, "resume_position", 0) > 0
        if self.finished is None or restored:
            return self.groups
        done = self.finished.keys
        return [g for g in self.groups if any(t is not None and t.key not in done for t in g.targets)]

    def rank_groups(self) -> list[TargetGroup]:
        """This rank's groups: every ``world_size``-th remaining one, padded so all ranks step
        together."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        remaining = self.remaining_groups()
        mine = remaining[rank::world]
        per_rank = math.ceil(len(remaining) / world)
        return mine + [TargetGroup(-1, (None,) * self.group_size)] * (per_rank - len(mine))

    def train_dataloader(self) -> DataLoader:
        objective = self.trainer.lightning_module
        start = getattr(objective, "resume_position", 0)
        # batch_size=None: each item already is a whole group's batch
        return DataLoader(GroupSteps(self.rank_groups(), objective.steps_per_target, start), batch_size=None)


class SentenceTargets(TargetDataModule):
    """Text runs: every target (a layer's unit, ``transformer.h.0:all``) for every sentence.

    Targets are ordered target-major (all sentences of the first target, then the next), so a
    group mostly shares one layer and stops its forward pass early together.

    Args:
        sentences: the sentences whose layer outputs are matched (the seeds: "The sky is blue.").
        targets: target specifications ``[layer:]unit`` (see :func:`parse_targets`); a unit
            counts token positions as patches: ``transformer.h.0:patch=[0-3]`` is the first
            four tokens.
        group_size, resume: as :class:`TargetDataModule`.
    """

    def __init__(self, sentences: list[str], targets: list[str] | str = "all", group_size: int = 16,
                 resume: bool = True) -> None:
        super().__init__(targets=targets, group_size=group_size, resume=resume)
        self.sentences = [sentences] if isinstance(sentences, str) else list(sentences)

    def expand(self, targets: list[Target]) -> list[Target]:
        """Each parsed target once per sentence, target-major."""
        if not self.sentences or not all(isinstance(s, str) and s.strip() for s in self.sentences):
            raise FeatvisError(f"sentences must be a list of non-empty strings, got {self.sentences!r}")
        return [replace(t, sentence=i) for t in targets for i in range(len(self.sentences))]
