"""The Trainer every featvis run uses: Lightning's, plus a run folder of its own, values that make
no sense refused before anything runs, and the ``layers`` subcommand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_featvis.errors import FeatvisError, WriteError, is_write_failure
from lightning_featvis.layer_table import describe_layers, format_layers
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.run_folder import claim_version, release

#: ``ckpt_path`` values Lightning resolves itself (not file paths)
NAMED_CHECKPOINTS = ("last", "best", "hpc", "registry")


def check_checkpoint(ckpt_path: Any, weights_only: bool | None = None) -> None:
    """Refuse a ``ckpt_path`` that is not a Lightning checkpoint, before the run starts:
    a missing file, a folder, a file torch cannot (or, with ``weights_only``, will not) read,
    or one without a ``state_dict``."""
    if ckpt_path is None or (isinstance(ckpt_path, str) and ckpt_path.split(":")[0] in NAMED_CHECKPOINTS):
        return
    path = Path(ckpt_path).expanduser()
    advice = "give a .ckpt file a featvis run's ModelCheckpoint wrote, or 'last'"
    if path.is_dir():
        raise FeatvisError(f"--ckpt_path {path} is a directory, not a checkpoint file: {advice}")
    if not path.is_file():
        raise FeatvisError(f"--ckpt_path {path}: no such file; {advice}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same to the user
        if "Unsupported global" in str(err) or "safe_globals" in str(err):
            # torch's message suggests weights_only=False: unsafe advice for a file of unknown origin
            reason = "torch refuses to unpickle it safely: it holds Python objects, not only tensors and plain data"
        else:
            reason = f"not a PyTorch checkpoint file ({type(err).__name__})"
        raise FeatvisError(f"cannot read --ckpt_path {path}: {reason}; {advice}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise FeatvisError(f"--ckpt_path {path} is a PyTorch file but not a Lightning checkpoint (no state_dict); "
                           f"{advice}. Weights for the network itself go in the network's checkpoint: argument")


class FeatvisTrainer(L.Trainer):
    """Lightning's Trainer with what every featvis run needs around ``fit``:

    - values that would make the run do nothing, or fail later, are refused first
      (``max_steps=0``, a ``ckpt_path`` that is not a checkpoint);
    - the run gets its own ``version_N`` folder, claimed atomically (two runs started at
      once into one root never share one; :mod:`lightning_featvis.run_folder`), and a run
      that fails before writing any result leaves no folder behind;
    - a disk that is full or read-only ends the run with one ``cannot write`` message.

    And the ``featvis layers`` subcommand.
    """

    def fit(self, model, train_dataloaders=None, val_dataloaders=None, datamodule=None, ckpt_path=None,
            weights_only=None) -> None:
        self.check_limits()
        check_checkpoint(ckpt_path, weights_only)
        folder = claim_version(self.logger)
        try:
            super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only)
        except FeatvisError:
            release(folder)
            raise
        except OSError as err:
            if not is_write_failure(err):
                raise
            release(folder)
            raise WriteError.from_os_error(err, folder) from err

    def check_limits(self) -> None:
        """Refuse limits under which the run would stop before its first step."""
        if self.max_steps == 0:
            raise FeatvisError("--trainer.max_steps 0 renders nothing: give the number of steps to stop after, "
                               "or leave it at -1 to run every target")
        if self.max_epochs == 0:
            raise FeatvisError("--trainer.max_epochs 0 runs nothing: give at least 1")
        if self.limit_train_batches == 0:
            raise FeatvisError("--trainer.limit_train_batches 0 runs nothing: give a positive number or fraction")

    def layers(self, model: L.LightningModule, datamodule: L.LightningDataModule | None = None) -> None:
        """Print every addressable layer of the config's model with output shape and layout."""
        if not isinstance(model, VisualizationObjective):
            raise FeatvisError(f"{type(model).__name__} has no model adapter (model.network) to list layers of")
        network = model.network
        print(f"{network.name}: input {network.input_description}")
        print(format_layers(describe_layers(network)))
