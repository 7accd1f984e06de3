"""The handshake between a run's data module and its objective, made once in ``setup()``.

The data module first says what it holds beside the targets (:class:`RunData`: a text run's
sentences). The objective says what the data module needs to know of it (:class:`RunRequest`: the layer of
targets that name none, what ``*`` stands for in a layer, where its results and their table
live, where a checkpoint left the run); the data module answers with the run's plan
(:class:`RunPlan`: the targets, their groups, what an earlier run of the same config finished).
The data module hands the plan to the objective (:meth:`PlannedObjective.receive_plan`), where
every callback reads it; nothing else passes between the two.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from lightning_featvis.diversity import NO_DIVERSITY, Diversity
from lightning_featvis.resume import FinishedTargets, RunPosition
from lightning_featvis.targets import Target, TargetGroup


@dataclass(frozen=True)
class ResultsLocation:
    """Where a run keeps its finished results inside its log folder: ``folder`` (one file per
    target) and ``table`` in it (a ``target`` and a ``file`` column), which a rerun of the
    same config reads to take finished targets over."""

    folder: str = "images"
    table: str = "manifest.csv"


#: what :class:`~lightning_featvis.callbacks.ImageWriter` writes: PNGs and manifest.csv
IMAGE_RESULTS = ResultsLocation("images", "manifest.csv")
#: what :class:`~lightning_featvis.callbacks.TextReport` writes: embeddings and text.csv
TEXT_RESULTS = ResultsLocation("text", "text.csv")


@dataclass(frozen=True)
class RunData:
    """What the data module holds beside the targets, given to the objective with the question.

    Attributes:
        sentences: a text run's sentences (:class:`~lightning_featvis.data.SentenceTargets`);
            empty for image runs.
    """

    sentences: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRequest:
    """What the objective tells the data module.

    Attributes:
        default_layer: the layer of targets that name none (None: every target must name one).
        unit_sizes: a layer's sizes for ``*`` (``{"neurons": D, "patches": P}``), asked only
            for specifications that use ``*``.
        results: where the objective's results and their table are written.
        steps_per_target: optimizer steps of one group (every octave's steps).
        position: where a checkpoint left the run (:attr:`RunPosition.start` is known once the
            checkpoint is loaded, after setup: the data module reads it when it makes batches).
    """

    default_layer: str | None
    unit_sizes: Callable[[str], dict[str, int]]
    results: ResultsLocation
    steps_per_target: int
    position: RunPosition


@dataclass(frozen=True)
class RunPlan:
    """What the data module tells the objective and the callbacks.

    Attributes:
        targets: every target of the run, in config order (layers resolved).
        group_size: targets optimised together (G).
        groups: every group, padded to ``group_size``, by index.
        finished: what an earlier run of the same config finished (None: a fresh run); its
            results are taken over by the results' writer.
        results: where results are written (as requested).
        data: what the data module holds beside the targets (as given to the request).
        diversity: how strongly the images of one target in a group are pushed apart.
    """

    targets: tuple[Target, ...]
    group_size: int
    groups: tuple[TargetGroup, ...]
    finished: FinishedTargets | None
    results: ResultsLocation
    data: RunData = RunData()
    diversity: Diversity = NO_DIVERSITY

    def order(self) -> dict[str, int]:
        """Each target's position in the config, by key (reports write rows in this order)."""
        return {t.key: i for i, t in enumerate(self.targets)}


class PlannedObjective(ABC):
    """The objective's side of the handshake (every
    :class:`~lightning_featvis.objectives.VisualizationObjective` is one)."""

    @abstractmethod
    def run_request(self, data: RunData) -> RunRequest:
        """What the data module needs to know of this objective, given what it holds (asked
        in the data module's setup, which runs before the callbacks' and the objective's)."""

    @abstractmethod
    def receive_plan(self, plan: RunPlan) -> None:
        """Take the run's plan (the data module's answer, in its setup), for this objective
        and the callbacks, whose setup comes next."""
