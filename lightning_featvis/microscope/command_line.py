"""``featvis examples``, ``featvis gallery`` and ``featvis microscope``: the microscope's commands.

``featvis examples --config RUN.yaml --data SOURCE [--output DIR]`` finds every target's
dataset examples (:func:`~lightning_featvis.microscope.runs.examples_from_config`; Trainer
settings as ``--trainer.devices 2``, ``--trainer.precision bf16-mixed``...);
``featvis gallery RUN_DIR [--examples DIR] [--output DIR]`` writes the static site
(:func:`~lightning_featvis.microscope.gallery.write_gallery`);
``featvis microscope --config RUN.yaml --data SOURCE [--output DIR]`` does all three (the render
too) into one folder.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys

from lightning_featvis.errors import FeatvisError
from lightning_featvis.lightning_cli import with_recipes


class _Parser(argparse.ArgumentParser):
    """argparse whose refusals are one ``featvis: error:`` line (a FeatvisError), not usage text."""

    def error(self, message: str):
        raise FeatvisError(f"{self.prog}: {message} (see {self.prog} --help)")


def default_output(source: str) -> str:
    """``examples/<source>``: e.g. ``examples/digits``, ``examples/photos`` for a folder ``photos/``."""
    name = re.sub(r"[^\w.-]+", "_", source.rstrip("/").rsplit("/", 1)[-1].replace(":", "_")).strip("_.")
    return f"examples/{name or 'data'}"


def _add_pass_options(parser: _Parser) -> None:
    """The options of a dataset-examples pass, shared by ``featvis examples`` and ``featvis microscope``."""
    parser.add_argument("--config", action="append", required=True, help="the run's config (as for featvis fit)")
    parser.add_argument("--data", required=True, help="digits, digits:train, digits:val, a folder of images, "
                        "hf:NAME[:SPLIT], or a directory written by datasets' save_to_disk")
    parser.add_argument("--k", type=int, default=9, help="examples per unit and side (default 9)")
    parser.add_argument("--batch_size", type=int, default=64, help="images per batch and device (default 64)")
    parser.add_argument("--num_workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument("--bins", type=int, default=64, help="histogram bins per unit (default 64)")
    parser.add_argument("--save_every", type=float, default=60.0,
                        help="seconds between saves of the pass's state, to continue it if interrupted (default 60)")


def _parse_pass(parser: _Parser, args: list[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    """The parsed options, the configs as FeatvisCLI arguments (recipes resolved) and the
    ``--trainer.NAME`` settings; any other unknown option is refused."""
    known, rest = parser.parse_known_args(args)
    strays = [a for a in rest if a.startswith("--") and not a.startswith("--trainer.")]
    if strays:
        parser.error(f"unknown option {strays[0]}: Trainer settings are --trainer.NAME")
    return known, with_recipes([arg for config in known.config for arg in ("--config", config)]), rest


def _pass_options(known: argparse.Namespace) -> dict:
    """:func:`~lightning_featvis.microscope.runs.run_pass`'s options from the parsed ones."""
    return {"k": known.k, "batch_size": known.batch_size, "num_workers": known.num_workers, "bins": known.bins,
            "save_every": known.save_every}


def examples_command(args: list[str]) -> None:
    parser = _Parser(prog="featvis examples", description=(
        "Stream a dataset through the config's model once and keep, for each of its targets, the k images that "
        "drive it most and least (with per-patch maps) and the histogram of its activation. Trainer settings "
        "as in featvis fit: --trainer.accelerator, --trainer.devices, --trainer.strategy, --trainer.precision, "
        "--trainer.limit_predict_batches."))
    _add_pass_options(parser)
    parser.add_argument("--output", help="folder to write (default: examples/<data>)")
    known, configs, trainer = _parse_pass(parser, args)
    from lightning_featvis.microscope.runs import examples_from_config

    examples_from_config(configs + trainer, known.data, known.output or default_output(known.data),
                         command=shlex.join(["featvis", "examples", *args]), **_pass_options(known))


def gallery_command(args: list[str]) -> None:
    parser = _Parser(prog="featvis gallery", description=(
        "Write a static site (HTML, CSS, images; opens offline from file://) of a featvis fit run: a page per "
        "layer with every unit's image, a page per unit with its dataset examples when --examples is given."))
    parser.add_argument("run_dir", help="the run's folder, lightning_logs/version_N")
    parser.add_argument("--examples", help="a featvis examples --output folder")
    parser.add_argument("--output", help="folder to write (default: RUN_DIR/gallery)")
    known = parser.parse_args(args)
    from lightning_featvis.microscope.gallery import write_gallery

    index = write_gallery(known.run_dir, known.examples, known.output)
    print(f"featvis: done: gallery in {index.parent}; open {index} in a browser", file=sys.stderr)


def microscope_command(args: list[str]) -> None:
    parser = _Parser(prog="featvis microscope", description=(
        "The whole microscope of a config in one command: featvis fit (renders into OUTPUT/render), featvis "
        "examples (OUTPUT/examples) and featvis gallery (OUTPUT/site). Rerun the same command to continue an "
        "interrupted one. Trainer settings (--trainer.NAME) go to the render and the examples pass."))
    _add_pass_options(parser)
    parser.add_argument("--output", default="microscope", help="folder to write (default: microscope)")
    known, configs, rest = _parse_pass(parser, args)
    from pathlib import Path

    from lightning_featvis.lightning_cli import FeatvisCLI
    from lightning_featvis.microscope.gallery import write_gallery
    from lightning_featvis.microscope.runs import examples_from_config

    output = Path(known.output).expanduser()
    cli = FeatvisCLI(args=["fit", *configs, "--trainer.default_root_dir", str(output / "render"), *rest])
    run_dir = cli.trainer.log_dir
    if cli.trainer.logger is None or run_dir is None:
        raise FeatvisError("featvis microscope needs the render's log folder: keep the config's logger")
    examples_from_config(configs + rest, known.data, output / "examples", **_pass_options(known),
                         command=shlex.join(["featvis", "examples", *configs, "--data", known.data, "--output",
                                             str(output / "examples"), *rest]))
    index = write_gallery(run_dir, output / "examples", output / "site")
    print(f"featvis: done: the microscope is in {output}; open {index} in a browser", file=sys.stderr)


def run_command(args: list[str]) -> None:
    """Run ``featvis examples``, ``featvis gallery`` or ``featvis microscope`` (``args[0]`` names which)."""
    commands = {"examples": examples_command, "gallery": gallery_command, "microscope": microscope_command}
    commands[args[0]](args[1:])
