"""The ``featvis`` command: LightningCLI over any objective or training module in this package."""

from __future__ import annotations

import signal
import sys

import lightning as L
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_featvis.errors import FeatvisError
from lightning_featvis.layers import describe_layers, format_layers


class FeatvisTrainer(L.Trainer):
    """The Lightning Trainer plus the ``featvis layers`` subcommand."""

    def layers(self, model: L.LightningModule, datamodule: L.LightningDataModule | None = None) -> None:
        """Print every addressable layer of the config's model with output shape and layout."""
        network = getattr(model, "network", None)
        if network is None:
            raise FeatvisError(f"{type(model).__name__} has no model adapter (model.network) to list layers of")
        print(f"{network.name}: input {network.input_description}")
        print(format_layers(describe_layers(network)))


class FeatvisCLI(LightningCLI):
    """LightningCLI with this project's defaults: objectives bring their own optimizer, the
    run is seeded (seed 0 unless ``--seed_everything`` says otherwise) and is one epoch; and
    one more subcommand, ``layers``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "layers": {"model", "datamodule"}}

    def __init__(self, args=None, **kwargs) -> None:
        kwargs.setdefault("trainer_class", FeatvisTrainer)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("seed_everything_default", 0)
        # a run's folder is new (version_N) unless the user names it (logger version): then
        # writing over it, config.yaml included, is what they asked for
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # a render is one pass over the targets (training configs set their own max_epochs)
        kwargs.setdefault("trainer_defaults", {"max_epochs": 1})
        super().__init__(args=args, **kwargs)

    def before_fit(self) -> None:
        # the config's identity lets a rerun of the same command resume an interrupted sweep
        from lightning_featvis.data import TargetDataModule
        from lightning_featvis.resume import config_fingerprint

        if isinstance(self.datamodule, TargetDataModule):
            self.datamodule.run_fingerprint = config_fingerprint(self.config[self.subcommand].as_dict())


def _featvis_error(err: BaseException) -> FeatvisError | None:
    """The FeatvisError behind ``err``: the argument parser wraps errors raised while it
    instantiates classes, keeping the original on the exception chain."""
    while err is not None:
        if isinstance(err, FeatvisError):
            return err
        err = err.__cause__ or err.__context__
    return None


def main(args: list[str] | None = None) -> None:
    """Entry point of ``featvis``; bad input ends with one message, not a traceback."""
    try:
        FeatvisCLI(args=args)
    except SIGTERMException:
        # Lightning ends the step under way, lets callbacks save (ImageWriter writes what it
        # has), then raises this SystemExit whose status would be 0: report a signal's instead
        print("featvis: stopped by SIGTERM", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as err:
        cause = _featvis_error(err)
        if cause is None:
            raise
        print(f"featvis: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
