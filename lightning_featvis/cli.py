"""The ``featvis`` command: LightningCLI over any objective or training module in this package."""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from lightning_featvis.errors import FeatvisError


class FeatvisCLI(LightningCLI):
    """LightningCLI with this project's defaults: objectives bring their own optimizer, the
    run is seeded (seed 0 unless ``--seed_everything`` says otherwise) and is one epoch."""

    def __init__(self, args=None, **kwargs) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("seed_everything_default", 0)
        # a render is one pass over the targets (training configs set their own max_epochs)
        kwargs.setdefault("trainer_defaults", {"max_epochs": 1})
        super().__init__(args=args, **kwargs)


def main(args: list[str] | None = None) -> FeatvisCLI | None:
    """Entry point of ``featvis``; bad input ends with one message, not a traceback."""
    try:
        return FeatvisCLI(args=args)
    except FeatvisError as err:
        print(f"featvis: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
