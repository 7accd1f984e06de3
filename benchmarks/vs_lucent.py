"""Seconds per target of a featvis render against Lucent's ``render_vis`` doing the same job.

Both sides render the same objective, on the same network (one instance, same random weights),
for the same number of optimizer steps (``--steps``, default 32), each in its ordinary way:

* **network**: a randomly initialised torchvision ViT-B/32 at 224 px
  (``lightning_featvis.models.TorchvisionViT``), frozen (``requires_grad_(False)``, so neither
  side computes weight gradients) and in ``eval()``.
* **objective**: maximise the mean activation of one residual-stream channel (neuron ``i``) of
  ``encoder.layers.encoder_layer_5`` (block 6 of 12) over all 49 patch tokens (class token
  excluded). featvis: ``NeuronObjective(loss_form="mean")`` with target ``neuron=i``. Lucent:
  a custom objective (``objectives.wrap_objective``) returning ``-acts[:, 1:, i].mean()`` of the
  hooked layer output ``[B, T, D]`` (Lucent's own ``channel`` assumes ``[B, C, H, W]``).
* **optimizer**: Adam, lr 0.05 (Lucent's default) on both sides.
* **settings** (two rows each):

  - ``plain``: pixel parameterization, no transforms. Lucent ``param.image(224, fft=False,
    decorrelate=False)`` (sigmoid of pixels) and ``transforms=[]``; featvis ``PixelImage()``
    and no callbacks.
  - ``lucent-style``: Lucent's defaults, ``param.image(224)`` (FFT, decorrelated colour) and
    ``transform.standard_transforms`` (pad, jitter, scale, rotate, jitter; upsampled back to
    224 px by ``fixed_image_size=224``); featvis ``FourierImage(decorrelate=True)`` with
    ``AugmentationEnsemble(copies=1, jitter=0.05, scale=(0.9, 1.1), rotate=10, color=0)``.

* **targets**: 1 target, and ``--targets`` (default 8) targets. Lucent renders one objective
  per ``render_vis`` call, so N targets are N calls; featvis renders the N targets as one
  group (``TargetDataModule(group_size=N)``), i.e. one ``[N, 3, 224, 224]`` batch per step.
  A third row per setting gives Lucent its own batching for comparison: one call with
  ``param.image(..., batch=N)`` and the sum of N objectives, each reading its own image
  (compared with the featvis renders of the row above, which are not run again).

A sample is the wall time of a whole render divided by its number of targets: for featvis
one ``Trainer`` built and ``fit`` (Lightning's loop, the final measurement of the images and
the PNG files it writes), for Lucent the ``render_vis`` call(s) (it returns the images as
arrays and is asked for no display or progress bar). The network is built once, outside the
timing, for both. The sides run in alternating order (A B, B A, ...) for ``--rounds`` rounds
after one untimed warm-up render each; the table gives each side's median seconds per target
and the ratio ``Lucent / featvis`` of the medians (> 1: featvis is faster).

What differs by design, and is part of what is measured: featvis stops the forward and
backward pass right after the target layer (here block 6 of 12); Lucent runs the whole
network with a forward hook on every module. Lucent also never removes the hooks it adds,
so every ``render_vis`` call would add ~150 more hooks to the network; this script removes
them after each call so that every Lucent render starts on equal terms.

Lucent is installed for this benchmark only, never as a project dependency: the
``torch-lucent`` wheel pins ``kornia<=0.4.1`` (and test tools), but kornia 0.4.1 itself
imports and runs with torch 2.14. It goes into a separate folder inside the (git-ignored)
project virtualenv that only this script puts on ``sys.path`` (appended, so the project's own
packages always win), and which ``pip check`` and the project never see::

    .venv/bin/pip install --no-deps --target .venv/lucent-site torch-lucent==0.1.8 kornia==0.4.1 decorator
    .venv/bin/pip install --target .venv/lucent-site ipython   # lucent.optvis imports IPython.display

(torch, torchvision, numpy, pillow and tqdm, which Lucent also imports, come from the project
venv.) Uninstall with ``rm -rf .venv/lucent-site``. ``--lucent-site`` (or the environment
variable ``FEATVIS_LUCENT_SITE``) picks another folder.
Without Lucent the script still runs the featvis side and leaves the Lucent columns empty.

Run (from the repository root, CPU only; ~12 minutes on 2 CPU cores at the defaults, 1 thread)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vs_lucent.py                 # ViT-B/32, 1 thread
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vs_lucent.py --quick         # tiny ViT smoke run
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vs_lucent.py --no-lucent     # featvis side only

``--quick`` only checks that everything runs: the tiny model's renders are mostly fixed
per-render cost and its ratios say nothing about ViT-B/32. Check ``cat /proc/loadavg`` first;
torch runs on one thread by default (``--threads``), since with OpenMP's default thread count a
competing process makes spin-waiting threads many times slower.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from torch import nn

from lightning_featvis.callbacks import AugmentationEnsemble
from lightning_featvis.data import TargetDataModule
from lightning_featvis.models import CustomViT, ModelAdapter, TorchvisionViT
from lightning_featvis.objectives.neuron import NeuronObjective
from lightning_featvis.params import FourierImage, PixelImage
from lightning_featvis.schedule import Octave

REPO = Path(__file__).resolve().parents[1]
# FEATVIS_LUCENT_SITE: where CI installs it (.ci/run), outside the repository
DEFAULT_LUCENT_SITE = Path(os.environ.get("FEATVIS_LUCENT_SITE") or REPO / ".venv" / "lucent-site")
LR = 0.05  # Lucent's default Adam learning rate, used by both sides
SETTINGS = ("plain", "lucent-style")


class Setup(NamedTuple):
    """The network and target layer of one benchmark run (``layer`` is a dotted module name)."""

    adapter: ModelAdapter
    layer: str


FULL = Setup(adapter=TorchvisionViT(name="vit_b_32", weights=None), layer="encoder.layers.encoder_layer_5")
QUICK = Setup(
    adapter=CustomViT(
        image_size=32, patch_size=4, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ),
    layer="encoder.layers.encoder_layer_1",
)


# --- Lucent, from its benchmark-only folder ------------------------------------------------


def import_lucent(site: Path | None) -> SimpleNamespace | None:
    """Lucent's ``render``, ``param``, ``transform`` and ``objectives`` modules, or None when it
    is not importable. ``site`` (if it exists) is appended to ``sys.path`` first."""
    if site is not None and site.is_dir() and str(site) not in sys.path:
        sys.path.append(str(site))  # appended: the project's own packages always win
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # kornia 0.4.1 uses deprecated torch.jit APIs
            from lucent.optvis import objectives, param, render, transform
    except ImportError:
        return None
    return SimpleNamespace(render=render, param=param, transform=transform, objectives=objectives)


def lucent_objective(lucent: SimpleNamespace, layer: str, units: Sequence[int]):
    """Lucent objective: minus the mean over patch tokens of channel ``units[b]`` of image ``b``
    of the hooked layer's output ``[B, T, D]``, summed over the images (one unit: the batch of 1)."""

    @lucent.objectives.wrap_objective()
    def token_channel(layer_name: str, unit: int, batch: int | None = None):
        def inner(hook):
            acts = hook(layer_name)
            if batch is not None:
                acts = acts[batch : batch + 1]
            return -acts[:, 1:, unit].mean()  # token 0 is the class token

        return inner

    name = layer.replace(".", "_")  # Lucent names modules by their path joined with "_"
    if len(units) == 1:
        return token_channel(name, units[0])
    return lucent.objectives.Objective.sum([token_channel(name, u, batch=b) for b, u in enumerate(units)])


@contextlib.contextmanager
def lucent_hooks_removed(net: nn.Module) -> Iterator[None]:
    """Remove, on exit, every forward hook added inside: ``render_vis`` registers one on every
    module and never removes them."""
    before = {module: dict(module._forward_hooks) for module in net.modules()}
    try:
        yield
    finally:
        for module, hooks in before.items():
            module._forward_hooks.clear()
            module._forward_hooks.update(hooks)


def lucent_seconds_per_target(
    lucent: SimpleNamespace,
    net: nn.Module,
    setting: str,
    layer: str,
    size: int,
    units: list[int],
    steps: int,
    batched: bool,
) -> float:
    """Wall seconds per target of rendering ``units`` with ``render_vis``: one call per unit, or
    one call with a batch of ``len(units)`` images when ``batched``."""
    jobs = [units] if batched else [[u] for u in units]
    if setting == "plain":
        transforms = []
    else:
        transforms = lucent.transform.standard_transforms

    def param_f(batch: int):
        if setting == "plain":
            return lambda: lucent.param.image(size, batch=batch, fft=False, decorrelate=False)
        return lambda: lucent.param.image(size, batch=batch)

    # render_vis upsamples anything below 224 px to 224 unless told the size; the transforms
    # change the size, so they need it resized back to the model's input
    fixed = size if (transforms or size < 224) else None
    start = time.perf_counter()
    for job in jobs:
        with lucent_hooks_removed(net):
            images = lucent.render.render_vis(
                net,
                lucent_objective(lucent, layer, job),
                param_f(len(job)),
                optimizer=lambda params: torch.optim.Adam(params, lr=LR),
                transforms=transforms,
                thresholds=(steps,),
                show_image=False,
                progress=False,
                fixed_image_size=fixed,
            )
        assert images[-1].shape[0] == len(job)
    return (time.perf_counter() - start) / len(units)


# --- featvis side ----------------------------------------------------------------------------


def featvis_objective(setup: Setup, net: nn.Module, setting: str, steps: int) -> NeuronObjective:
    """The featvis objective of ``setting``, sharing the already built ``net``."""
    param = PixelImage() if setting == "plain" else FourierImage(decorrelate=True)
    objective = NeuronObjective(
        network=setup.adapter,
        layer=setup.layer,
        loss_form="mean",
        octaves=[Octave(steps=steps)],
        param=param,
        optimizer=lambda params: torch.optim.Adam(params, lr=LR),
    )
    objective.net = net  # build_network() keeps a network already set
    return objective


def featvis_seconds_per_target(objective: NeuronObjective, setting: str, units: list[int], root: str) -> float:
    """Wall seconds per target of one Trainer fit rendering ``units`` as one group."""
    start = time.perf_counter()
    callbacks = (
        []
        if setting == "plain"
        else [AugmentationEnsemble(copies=1, jitter=0.05, scale=(0.9, 1.1), rotate=10.0, color=0.0)]
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,  # the objective's own ImageWriter writes the PNGs here
        callbacks=callbacks,
    )
    targets = [f"neuron={u}" for u in units]
    trainer.fit(objective, datamodule=TargetDataModule(targets=targets, group_size=len(units)))
    return (time.perf_counter() - start) / len(units)


# --- comparison and report -------------------------------------------------------------------


def interleaved(run_a: Callable[[], float], run_b: Callable[[], float] | None, rounds: int):
    """Samples of both sides from ``rounds`` rounds, ordered A B, B A, A B, ... (B may be None)."""
    times_a: list[float] = []
    times_b: list[float] = []
    for r in range(rounds):
        order = [(run_a, times_a), (run_b, times_b)]
        for run, times in order if r % 2 == 0 else reversed(order):
            if run is not None:
                times.append(run())
    return times_a, times_b


def stats(times: list[float]) -> dict | None:
    if not times:
        return None
    return {"s": statistics.median(times), "min": min(times), "max": max(times), "n": len(times)}


def table(rows: Sequence[dict]) -> str:
    def cell(s: dict | None) -> str:
        if s is None:
            return "n/a"
        return f"{s['s']:.3g} ({s['min']:.3g}-{s['max']:.3g})"

    header = (
        "| setting | targets | Lucent | Lucent s/target (min-max) | featvis s/target (min-max) "
        "| ratio Lucent/featvis |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"| {r['setting']} | {r['targets']} | {r['lucent_mode']} | {cell(r['lucent'])} "
            f"| {cell(r['featvis'])} | {ratio} |"
        )
    return "\n".join(lines)


def machine() -> str:
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"torch {torch.__version__}, lightning {L.__version__}, threads {torch.get_num_threads()}, "
        f"CPUs {os.cpu_count()}, loadavg {load}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=32, help="optimizer steps per target (default 32)")
    parser.add_argument("--targets", type=int, default=8, help="targets of the multi-target rows (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="timed renders per side and row (default 2: A B, B A)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS), help="which settings to run")
    parser.add_argument("--no-batched", action="store_true", help="skip the rows with Lucent's own batching")
    parser.add_argument("--no-lucent", action="store_true", help="featvis side only")
    parser.add_argument(
        "--lucent-site",
        type=Path,
        default=DEFAULT_LUCENT_SITE,
        help=f"folder Lucent is installed in (default {DEFAULT_LUCENT_SITE})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny ViT smoke run instead of ViT-B/32")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.targets < 2 or args.rounds < 1 or args.threads < 1:
        parser.error("need --steps >= 1, --targets >= 2, --rounds >= 1, --threads >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run every comparison, print the table, return its rows."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        # a test calling main() must not leave the rest of its process on one thread
        torch.set_num_threads(threads)


def run(args: argparse.Namespace) -> list[dict]:
    # Lightning's per-fit banners ("GPU available: ...") would bury the table
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    began = time.perf_counter()
    setup = QUICK if args.quick else FULL
    lucent = None if args.no_lucent else import_lucent(args.lucent_site)
    if lucent is None and not args.no_lucent:
        print(f"Lucent is not importable (looked in {args.lucent_site} too): featvis side only; see the docstring")
    print(f"start: {machine()}", flush=True)

    torch.manual_seed(0)
    net = setup.adapter.build().eval().requires_grad_(False)
    size, n = setup.adapter.image_size, args.targets
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for setting in args.settings:
            objective = featvis_objective(setup, net, setting, args.steps)

            def featvis(units: list[int], objective=objective, setting=setting) -> Callable[[], float]:
                return lambda: featvis_seconds_per_target(objective, setting, units, root)

            def lucent_side(
                units: list[int], batched: bool = False, steps: int = args.steps, setting=setting
            ) -> Callable[[], float] | None:
                if lucent is None:
                    return None

                def render() -> float:
                    random.seed(0)
                    np.random.seed(0)  # Lucent's transforms draw from numpy's global generator
                    torch.manual_seed(0)
                    return lucent_seconds_per_target(lucent, net, setting, setup.layer, size, units, steps, batched)

                return render

            # untimed short warm-up renders of both sides (first-call allocations, lazy imports)
            warm = featvis_objective(setup, net, setting, min(args.steps, 2))
            featvis_seconds_per_target(warm, setting, list(range(n)), root)
            if lucent is not None:
                lucent_side([0], steps=min(args.steps, 2))()
                lucent_side(list(range(n)), batched=True, steps=min(args.steps, 2))()

            comparisons = [(1, "1 call", lucent_side([0]), featvis([0]))]
            comparisons.append((n, f"{n} calls", lucent_side(list(range(n))), featvis(list(range(n)))))
            if not args.no_batched:
                comparisons.append(
                    (n, f"1 call, batch={n}", lucent_side(list(range(n)), batched=True), featvis(list(range(n))))
                )
            featvis_times: dict[int, list[float]] = {}  # by number of targets
            for targets, mode, run_lucent, run_featvis in comparisons:
                if run_lucent is None and targets in featvis_times:
                    continue  # without Lucent the batched row would repeat the row above
                if targets in featvis_times:  # the batched row: the same featvis renders as above
                    times_featvis, times_lucent = featvis_times[targets], interleaved(run_lucent, None, args.rounds)[0]
                else:
                    times_featvis, times_lucent = interleaved(run_featvis, run_lucent, args.rounds)
                    featvis_times[targets] = times_featvis
                s_lucent, s_featvis = stats(times_lucent), stats(times_featvis)
                ratio = None if s_lucent is None else s_lucent["s"] / s_featvis["s"]
                mode = mode if lucent is not None else "not installed"
                rows.append(
                    {
                        "setting": setting,
                        "targets": targets,
                        "lucent_mode": mode,
                        "lucent": s_lucent,
                        "featvis": s_featvis,
                        "ratio": ratio,
                    }
                )
                print(f"done: {setting}, {targets} target(s), Lucent {mode}", flush=True)

    print()
    print(table(rows))
    print(
        f"\nfeatvis: N targets as one group, forward stopped after {setup.layer}; Lucent: whole network, "
        f"hooks on every module. Adam lr {LR}, {args.steps} steps per target."
    )
    if args.quick:
        print(
            "(--quick: the tiny model's renders are mostly fixed per-render cost; its ratios say nothing of ViT-B/32)"
        )
    print()
    print(
        f"end: {machine()}; wall clock, median of {args.rounds} renders per side and row "
        f"after one warm-up; total {time.perf_counter() - began:.0f} s"
    )
    return rows


if __name__ == "__main__":
    main()
