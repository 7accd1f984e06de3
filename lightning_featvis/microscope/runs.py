"""Dataset examples from a run's config (``featvis examples``) or from Python
(:func:`dataset_examples`): both build the objective the way a render builds it (the same
``FeatvisCLI`` parses the same config) and run the same pass
(:mod:`~lightning_featvis.microscope.examples_pass`) on a ``FeatvisTrainer``.

Shapes: U targets, k examples per target and side.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from lightning_featvis.algebra import UnitSum
from lightning_featvis.data import TargetDataModule
from lightning_featvis.errors import FeatvisError
from lightning_featvis.lightning_cli import FeatvisCLI, checked_trainer, featvis_error
from lightning_featvis.microscope.examples_pass import (
    ExamplesFolder,
    ExamplesPass,
    ImageSourceData,
    fingerprint,
    finished,
)
from lightning_featvis.microscope.store import DatasetExamples
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.objectives.text import TextReconstructionObjective
from lightning_featvis.targets import Target
from lightning_featvis.trainer import FeatvisTrainer

#: the config's Trainer settings an examples pass keeps (where it runs, in what precision, how far)
TRAINER_SETTINGS = ("accelerator", "devices", "strategy", "num_nodes", "precision", "limit_predict_batches",
                    "enable_progress_bar")


class ConfigCLI(FeatvisCLI):
    """FeatvisCLI that builds a config's objective and data module but no Trainer: a pass of
    dataset examples makes its own (a prediction run, without the render's callbacks). It
    reads a run's saved ``config.yaml`` too, whose ``ckpt_path`` (the render's) it ignores."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--ckpt_path", default=None, help="a render's checkpoint (not used by dataset examples)")

    def instantiate_trainer(self, **kwargs) -> None:
        return None


def examples_targets(objective: VisualizationObjective, datamodule: TargetDataModule) -> list[Target]:
    """The run's targets as the data module parses them, each unit once (a diverse set's
    copies and repeats share their target's examples)."""
    if isinstance(objective, TextReconstructionObjective) or not isinstance(objective, VisualizationObjective):
        raise FeatvisError(f"dataset examples are images that drive a unit: {type(objective).__name__} "
                           "is not an image objective")
    if not isinstance(datamodule, TargetDataModule):
        raise FeatvisError("dataset examples take their targets from the config's TargetDataModule (data: ...)")
    seen, targets = set(), []
    for target in datamodule.parse(objective.run_request(datamodule.data())):
        if target.identity not in seen:
            seen.add(target.identity)
            targets.append(target.resolved(objective.default_layer))
    return targets


def run_pass(objective: VisualizationObjective, targets: Sequence[Target], source: str, output: str | Path, *,
             k: int = 9, batch_size: int = 64, num_workers: int = 0, bins: int = 64,
             trainer: Mapping | None = None, command: str = "", save_every: float = 60.0) -> DatasetExamples | None:
    """Stream ``source`` through ``objective``'s network once; write and return each target's
    examples (None if the Trainer's limits stopped the pass before the end: rerun to continue).

    A folder that already holds this pass's result (same targets, weights, source and settings)
    is returned as it is; one holding another pass's is refused.

    Args:
        trainer: Trainer settings (:data:`TRAINER_SETTINGS`: accelerator, devices, strategy,
            precision, ...).
    """
    output = Path(output).expanduser()
    data = ImageSourceData(source, objective.network.image_size, batch_size, num_workers)
    examples_pass = ExamplesPass(objective, targets, k, len(data.dataset), bins)
    identity = fingerprint(examples_pass, source, data.size)
    done = finished(output)
    if done is not None:
        if done.fingerprint != identity:
            raise FeatvisError(f"{output} holds dataset examples of other targets, weights, source or settings; "
                               "choose another --output (or delete that folder)")
        print(f"featvis: done: {output} already holds these dataset examples", file=sys.stderr)
        return done
    settings = {name: value for name, value in (trainer or {}).items() if name in TRAINER_SETTINGS}
    folder = ExamplesFolder(output, source, identity, command, save_every)
    runner = checked_trainer(lambda: FeatvisTrainer(**settings, logger=False, enable_checkpointing=False,
                                                    enable_model_summary=False, callbacks=[folder],
                                                    default_root_dir=str(output)), settings.get("accelerator", "auto"))
    runner.predict(examples_pass, datamodule=data, return_predictions=False)
    # spawned ranks wrote from their own processes: read the result back from the folder
    return folder.written or finished(output)


def examples_from_config(args: list[str] | dict, source: str, output: str | Path, **options) -> DatasetExamples | None:
    """:func:`run_pass` over the targets and model of a run's config: ``args`` is a command
    line (``["--config", "run.yaml", "--trainer.devices", "2"]``) or a config dict; ``options``
    are :func:`run_pass`'s."""
    try:
        cli = ConfigCLI(args=args, run=False)
    except Exception as err:
        cause = featvis_error(err)
        if cause is None or cause is err:
            raise
        raise cause from err
    targets = examples_targets(cli.model, cli.datamodule)
    return run_pass(cli.model, targets, source, output, trainer=cli.config.as_dict().get("trainer"), **options)


def dataset_examples(model: nn.Module | ModelAdapter, targets: Sequence[str | UnitSum] | str | UnitSum,
                     data: str = "digits", *, k: int = 9, output: str | Path | None = None, batch_size: int = 64,
                     num_workers: int = 0, bins: int = 64, recipe: str | None = None,
                     **options: object) -> DatasetExamples:
    """Each target's top-k and bottom-k images of ``data`` and its activation histogram, read
    as :func:`~lightning_featvis.render` reads the unit (same model, targets and options).

    Args:
        model: an ``nn.Module`` or one of the package's adapters, as for ``render``.
        targets: target strings or unit values, as for ``render``.
        data: an image source (:func:`~lightning_featvis.image_sources.image_source`):
            ``digits``, a folder, ``hf:NAME[:SPLIT]``, a ``save_to_disk`` directory.
        k: examples per target and side.
        output: the folder to write (``examples.pt``, ``examples.csv``, the images; what
            ``featvis gallery --examples`` reads); None: a temporary one, removed after.
            A folder holding an interrupted pass of the same is continued.
        batch_size: images per batch (per device).
        num_workers: DataLoader worker processes.
        bins: histogram bins per target.
        recipe: as for ``render`` (the objective that reads the units).
        **options: as for ``render`` (``accelerator``, ``devices``, ``precision``,
            ``directions``, ``dictionaries``...).
    """
    from lightning_featvis.rendering import LentModel, render_config

    dictionaries = options.pop("dictionaries", None)
    config, adapter_options = render_config(targets, recipe, None, 0, **options)
    with LentModel(model, dictionaries, adapter_options) as lent:
        cli = ConfigCLI(args=config, run=False)
        objective = lent.objective = cli.model
        if isinstance(objective, VisualizationObjective):
            objective.network = lent.adapter
        chosen = examples_targets(objective, cli.datamodule)
        with tempfile.TemporaryDirectory(prefix="featvis_examples_") as scratch:
            found = run_pass(objective, chosen, data, output if output is not None else scratch, k=k,
                             batch_size=batch_size, num_workers=num_workers, bins=bins, trainer=config.get("trainer"))
    if found is None:
        raise FeatvisError("the pass stopped before the end of the dataset (limit_predict_batches): "
                           "call again with the same output= to continue")
    return found
