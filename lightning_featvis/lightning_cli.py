"""The featvis flavour of LightningCLI that every run is parsed by (the command line, ``render()``,
dataset examples), and what goes with it: Trainers refused with one line, the FeatvisError behind a
wrapped error, packaged recipes named as configs."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import lightning as L
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from lightning_featvis.errors import FeatvisError, WriteError, is_write_failure
from lightning_featvis.recipes import resolve_config_argument
from lightning_featvis.trainer import FeatvisTrainer, check_checkpoint

#: accelerators that need a CUDA device
_CUDA = ("gpu", "cuda")


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
        kwargs.setdefault("parser_kwargs", {
            "description": "Feature visualization on a Lightning Trainer: featvis fit --config RUN.yaml renders "
                           "a config's targets.",
            "epilog": "The microscope's commands, beside these: featvis examples (each unit's dataset examples), "
                      "featvis gallery (a static site of a run), featvis microscope (render, examples and "
                      "gallery in one); see featvis examples --help."})
        # a run's folder is new (version_N) unless the user names it (logger version): then
        # writing over it, config.yaml included, is what they asked for
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        # a render is one pass over the targets (training configs set their own max_epochs)
        kwargs.setdefault("trainer_defaults", {"max_epochs": 1})
        with warnings.catch_warnings():
            # args is always the whole command line here (featvis's own argv with recipes
            # resolved, or render()'s config): Lightning's warning about args beside sys.argv
            # would greet every run
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            super().__init__(args=args, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads --ckpt_path's hyperparameters right after parsing: a file that is
        # not a checkpoint must be refused before that, with one message
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_checkpoint(self.config[subcommand].get("ckpt_path"))

    def instantiate_trainer(self, **kwargs):
        trainer = self._get(self.config_init, "trainer", default={}) or {}
        return checked_trainer(lambda: super(FeatvisCLI, self).instantiate_trainer(**kwargs),
                               trainer.get("accelerator", "auto"))

    def before_fit(self) -> None:
        # the config's identity lets a rerun of the same command resume an interrupted sweep
        from lightning_featvis.data import TargetDataModule
        from lightning_featvis.resume import config_fingerprint

        if isinstance(self.datamodule, TargetDataModule):
            self.datamodule.run_fingerprint = config_fingerprint(self.config[self.subcommand].as_dict())


def checked_trainer(make: Callable[[], L.Trainer], accelerator: object = "auto") -> L.Trainer:
    """``make()``'s Trainer, refusing a GPU accelerator where there is none and turning
    Lightning's refusals (devices, strategy, precision) into one line with its reason."""
    accelerator = str(accelerator).lower()
    if accelerator in _CUDA:
        import torch

        if not torch.cuda.is_available():
            raise FeatvisError(f"--trainer.accelerator {accelerator}: no GPU is available here "
                               "(torch.cuda.is_available() is False); use --trainer.accelerator cpu or auto, "
                               "or run on a machine with a GPU and a CUDA build of torch")
    try:
        return make()
    except MisconfigurationException as err:
        raise FeatvisError(f"trainer: {str(err).strip().splitlines()[0]}") from err


def featvis_error(err: BaseException) -> FeatvisError | None:
    """The FeatvisError behind ``err`` (a refused write counts as one): the argument parser
    wraps errors raised while it instantiates classes, keeping the original on the chain."""
    while err is not None:
        if isinstance(err, FeatvisError):
            return err
        if is_write_failure(err):
            return WriteError.from_os_error(err)
        err = err.__cause__ or err.__context__
    return None


def with_recipes(args: list[str]) -> list[str]:
    """``--config recipe:NAME`` (or ``--config=recipe:NAME``) names a packaged recipe's file."""
    out, follows_config = [], False
    for arg in args:
        if follows_config:
            arg = resolve_config_argument(arg)
        elif arg.startswith("--config="):
            arg = "--config=" + resolve_config_argument(arg[len("--config="):])
        follows_config = arg == "--config"
        out.append(arg)
    return out
