"""Targets as data: which units to visualise, grouped into optimizer steps, sharded over ranks.

A run visualises a list of *targets* (a layer and a unit). Targets are cut into groups of
``group_size``; a group's canvases are optimised together, one optimizer step per batch, for
the objective's number of steps. Each target's canvas is seeded by the target's own key, so
results do not depend on how targets are grouped or on how many ranks run them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from lightning_featvis.diversity import Diversity
from lightning_featvis.errors import FeatvisError
from lightning_featvis.plan import (
    PlannedObjective,
    ResultsLocation,
    RunData,
    RunPlan,
    RunRequest,
)
from lightning_featvis.resume import FinishedTargets, find_finished, write_run_file
from lightning_featvis.targets import Target, TargetGroup, blocks, parse_targets


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

    In ``setup()`` it asks the objective for its :class:`~lightning_featvis.plan.RunRequest`
    and makes the run's :class:`~lightning_featvis.plan.RunPlan` (:attr:`plan`), which the
    objective and the callbacks read.

    Args:
        targets: target specifications ``[layer:]unit`` (see :func:`parse_targets`).
        group_size: targets optimised together in one batch (with ``images_per_target`` k, a
            multiple of k, at least k: a target's images share a group).
        images_per_target: k images of every target, seeded apart (``layer:neuron=3``,
            ``...neuron3#1``, ...).
        diversity: w, pushes a target's images apart: each adds w times its Gram-matrix cosine
            with the others at ``diversity_layer`` (Lucid's diversity penalty,
            :mod:`lightning_featvis.diversity`); 0: independent images.
        diversity_layer: where the images' Gram matrices are compared (default: the target's
            own layer).
        diversity_until: the share of the steps the penalty acts in, its weight falling
            linearly to 0 across it (``null``: w throughout, as Lucid).
        resume: skip the targets that an earlier run of the same config finished, taking
            their images over (:mod:`lightning_featvis.resume`); needs a logger (versioned
            folders) and :attr:`run_fingerprint`, which ``featvis`` sets from the config.
    """

    def __init__(self, targets: list[str | list[tuple[float, str]]] | str = "neuron=0", group_size: int = 16,
                 images_per_target: int = 1, diversity: float = 0.0, diversity_layer: str | None = None,
                 diversity_until: float | None = 0.5, resume: bool = True) -> None:
        super().__init__()
        self.specs, self.requested_group_size, self.resume = targets, group_size, resume
        self.images_per_target, self.diversity = images_per_target, (diversity, diversity_layer, diversity_until)
        self.run_fingerprint: str | None = None
        self.plan: RunPlan | None = None
        self.request: RunRequest | None = None

    def parse(self, request: RunRequest) -> list[Target]:
        """The run's targets from the specifications, layers resolved (in setup: the CLI's
        parser would wrap errors here)."""
        if self.requested_group_size < 1:
            raise FeatvisError(f"group_size must be >= 1, got {self.requested_group_size}")
        if not (isinstance(self.images_per_target, int) and self.images_per_target >= 1):
            raise FeatvisError(f"images_per_target must be a whole number >= 1, got {self.images_per_target!r}")
        targets = parse_targets(self.specs, request.unit_sizes, request.default_layer)
        k = self.images_per_target
        # copy c of a listed target becomes copies c*k .. c*k+k-1: every image keeps its own key
        targets = [replace(t, copy=t.copy * k + i) for t in targets for i in range(k)]
        targets = self.expand(targets)
        if request.default_layer is None and any(part.layer is None for t in targets for part in t.parts):
            raise FeatvisError("targets name no layer and the objective has no default layer: set model.layer")
        return [t.resolved(request.default_layer) for t in targets]

    def group_size_for(self, targets: list[Target]) -> int:
        """The run's group size: the requested one, at most the number of targets, with k
        images per target a multiple of k (at least k), and at least the largest block (an
        interpolation's frames), so that no group splits a block."""
        k = self.images_per_target
        size = max(k, min(self.requested_group_size, len(targets)) // k * k)
        return max([size] + [len(block) for block in blocks(targets)])

    def expand(self, targets: list[Target]) -> list[Target]:
        """The run's targets from the parsed specifications (all of them, as they are)."""
        return targets

    def data(self) -> RunData:
        """What this data module holds beside the targets (nothing, for image runs)."""
        return RunData()

    @staticmethod
    def make_groups(targets: list[Target], size: int) -> list[TargetGroup]:
        """Every group of the run, in order, padded to ``size``: whole blocks
        (:func:`~lightning_featvis.targets.blocks`) of at most ``size`` targets each."""
        chunks: list[list[Target]] = [[]]
        for block in blocks(targets):
            if chunks[-1] and len(chunks[-1]) + len(block) > size:
                chunks.append([])
            chunks[-1] += block
        return [TargetGroup(index, tuple(chunk) + (None,) * (size - len(chunk))) for index, chunk in enumerate(chunks)]

    def setup(self, stage: str) -> None:
        objective = self.trainer.lightning_module
        if not isinstance(objective, PlannedObjective):
            raise FeatvisError(f"{type(self).__name__} gives targets to visualization objectives; "
                               f"{type(objective).__name__} is not one (model: ...)")
        data = self.data()
        self.request = request = objective.run_request(data)
        targets = self.parse(request)
        group_size = self.group_size_for(targets)
        self.plan = RunPlan(
            targets=tuple(targets),
            group_size=group_size,
            groups=tuple(self.make_groups(targets, group_size)),
            finished=self.find_finished(targets, request.results),
            results=request.results,
            data=data,
            diversity=Diversity(*self.diversity),
        )
        objective.receive_plan(self.plan)

    def find_finished(self, targets: list[Target], results: ResultsLocation) -> FinishedTargets | None:
        """Resume: what an earlier run of this config finished (its results are taken over),
        and record this run's config. Groups are cut from every target either way, so group
        numbers (and checkpoints' positions) never change; :meth:`rank_groups` leaves finished
        groups out."""
        log_dir = self.trainer.log_dir
        if not self.resume or self.run_fingerprint is None or self.trainer.logger is None or log_dir is None:
            return None
        # rank 0 reads (other nodes may not share its disk) and tells every rank, so all ranks
        # leave out the same groups
        found = (find_finished(Path(log_dir), self.run_fingerprint, results.folder, results.table)
                 if self.trainer.is_global_zero else None)
        finished = self.trainer.strategy.broadcast(found)
        if finished is not None:
            wanted = {t.key for t in targets}
            finished.rows = [row for row in finished.rows if row["target"] in wanted]
            if self.trainer.is_global_zero:  # a featvis line, like the others: stderr, whatever logging says
                print(f"featvis: resuming: {len(finished.rows)} targets finished by {finished.results_dir.parent}, "
                      f"{len(wanted - finished.keys)} to go", file=sys.stderr)
        if self.trainer.is_global_zero:
            write_run_file(Path(log_dir), self.run_fingerprint)
        return finished

    def remaining_groups(self) -> list[TargetGroup]:
        """The groups still to render: all of them, or (resuming by manifest) those with a
        target the earlier run did not finish. Groups finish whole, so with the same config
        (same targets and group size) a group is either finished or not started. A run
        restored from a checkpoint keeps them all: its position counts every group."""
        plan = self.plan
        if plan.finished is None or self.request.position.start > 0:
            return list(plan.groups)
        done = plan.finished.keys
        return [g for g in plan.groups if any(t is not None and t.key not in done for t in g.targets)]

    def rank_groups(self) -> list[TargetGroup]:
        """This rank's groups: every ``world_size``-th remaining one, padded so all ranks step
        together."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        remaining = self.remaining_groups()
        mine = remaining[rank::world]
        per_rank = math.ceil(len(remaining) / world)
        return mine + [TargetGroup(-1, (None,) * self.plan.group_size)] * (per_rank - len(mine))

    def train_dataloader(self) -> DataLoader:
        request = self.request
        # batch_size=None: each item already is a whole group's batch
        return DataLoader(GroupSteps(self.rank_groups(), request.steps_per_target, request.position.start),
                          batch_size=None)


class SentenceTargets(TargetDataModule):
    """Text runs: every target (a layer's unit, ``transformer.h.0:all``) for every sentence.

    Targets are ordered target-major (all sentences of the first target, then the next), so a
    group mostly shares one layer and stops its forward pass early together.

    Args:
        sentences: the sentences whose layer outputs are matched (the seeds: "The sky is blue.").
        targets: target specifications ``[layer:]unit`` (see :func:`parse_targets`); a unit
            counts token positions as patches: ``transformer.h.0:patch=[0-3]`` is the first
            four tokens.
        group_size: as :class:`TargetDataModule`.
        resume: as :class:`TargetDataModule`.
    """

    def __init__(self, sentences: list[str], targets: list[str] | str = "all", group_size: int = 16,
                 resume: bool = True) -> None:
        super().__init__(targets=targets, group_size=group_size, resume=resume)
        self.sentences = [sentences] if isinstance(sentences, str) else list(sentences)

    def data(self) -> RunData:
        """The sentences, for the objective (checked first: nothing else is asked before)."""
        if not self.sentences or not all(isinstance(s, str) and s.strip() for s in self.sentences):
            raise FeatvisError(f"sentences must be a list of non-empty strings, got {self.sentences!r}")
        return RunData(sentences=tuple(self.sentences))

    def expand(self, targets: list[Target]) -> list[Target]:
        """Each parsed target once per sentence, target-major."""
        return [replace(t, sentence=i) for t in targets for i in range(len(self.sentences))]
