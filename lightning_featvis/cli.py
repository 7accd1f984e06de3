"""The ``featvis`` command: ``fit``, ``layers`` and LightningCLI's other subcommands over any
objective or training module in this package (:class:`~lightning_featvis.lightning_cli.FeatvisCLI`),
and the microscope's ``examples``, ``gallery`` and ``microscope``; bad input ends in one line."""

from __future__ import annotations

import signal
import sys
import threading

from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_featvis.errors import is_write_failure
from lightning_featvis.lightning_cli import FeatvisCLI, featvis_error, with_recipes
from lightning_featvis.microscope.command_line import run_command

__all__ = ["FeatvisCLI", "main"]

#: the microscope's subcommands (lightning_featvis.microscope.command_line), beside LightningCLI's
MICROSCOPE_COMMANDS = ("examples", "gallery", "microscope")


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """Threads' uncaught errors as Python prints them, but refused writes: TensorBoard's
    event-file writer thread dies on a full disk with a traceback, then hands the same error
    to the next write in the main thread, which reports it as one line."""
    if not is_write_failure(args.exc_value):
        threading.__excepthook__(args)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``featvis``; bad input ends with one message, not a traceback."""
    threading.excepthook = _thread_excepthook
    args = sys.argv[1:] if args is None else args
    try:
        if args and args[0] in MICROSCOPE_COMMANDS:
            # their own command lines: ``--data SOURCE`` names images, not LightningCLI's data module
            run_command(args)
            return
        FeatvisCLI(args=with_recipes(args))
    except SIGTERMException:
        # Lightning ends the step under way, lets callbacks save (ImageWriter writes what it
        # has), then raises this SystemExit whose status would be 0: report a signal's instead
        print("featvis: stopped by SIGTERM", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except Exception as err:
        cause = featvis_error(err)
        if cause is None:
            raise
        print(f"featvis: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
