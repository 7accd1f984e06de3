"""Per-step cost of a featvis render against the same work written as a plain PyTorch loop.

Measures, in one run:

1. **Overhead ratio**: ms per optimizer step of ``NeuronObjective`` on a randomly initialised
   torchvision ViT-B/32 (224 px, target ``encoder.layers.encoder_layer_11``, one octave, SGD,
   ``PositionalJitter`` and a 3x3 ``GaussianBlur``) against a hand-written loop doing the same
   work (pixel image ``[G, 3, 224, 224]`` from N(0.7, 1/20), normalise, forward stopped by a
   hook after the target layer, L1 distance of the selected activations to 200 summed over
   targets, backward, SGD step, torchvision Gaussian blur after the step). Once with one target
   (``neuron=0``, group of 1) and once with eight (``neuron=0-7``, group of 8).
   Ratio ``plain / featvis``; goal >= 0.95 (featvis at most ~5% slower).
2. **Early exit**: featvis ms per step with the target at block 2 (``encoder_layer_1``)
   against block 11 (``encoder_layer_10``), one target. Ratio ``block 2 / block 11``;
   goal <= 0.40 (the forward and backward stop at the target).
3. **render()**: ms per step of the same featvis run built by :func:`lightning_featvis.render`
   (the CLI's config path: a recipe with its parameterization, optimizer and callbacks set to
   the same by name) against ``Trainer.fit`` built by hand, one target. Ratio
   ``Trainer.fit / render()``; goal >= 0.95 (render adds nothing per step). Below the table,
   the fixed cost of one ``render()`` call: the median wall time of a whole one-step call
   against a whole one-step ``Trainer.fit``.

A step's time runs (by ``--clock``) from the start of one step to the start of the next, so
it includes everything the framework does per step (Lightning's loop, logging, hooks, data
fetching), not only the model work. Each featvis run has a final step that also measures and
writes the finished images; that step is never timed. The first ``--warmup`` steps of every
run are discarded. The two sides of a comparison run in alternating blocks (A B B A ...) so a
machine whose load drifts penalises both alike; each side's time is the median of all its
timed steps, and the goals are judged on the ratio of medians. The ratio of the sides'
fastest steps is printed too: other jobs only add time, so on a busy machine it is the
steadier of the two.

Run (from the repository root; ~3-4 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/step_overhead.py            # ViT-B/32, 1 thread
    .venv/bin/python benchmarks/step_overhead.py --quick    # tiny ViT smoke run (seconds)
    .venv/bin/python benchmarks/step_overhead.py --clock cpu  # machine shared with other jobs

``--quick`` only checks that everything runs: the tiny model's steps are too short for the
goals to apply.

Check ``cat /proc/loadavg`` first: another busy process skews every number. The script runs
torch on one thread by default (``--threads``), because with OpenMP's default thread count a
competing process makes the spin-waiting threads many times slower. On a shared machine
``--clock cpu`` times steps by this process's CPU time instead of wall time, so the time it
spends descheduled does not count (with several threads it does count their spin-waits).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import lightning as L
import torch
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur

from lightning_featvis.callbacks import GaussianBlur, PositionalJitter
from lightning_featvis.data import TargetDataModule
from lightning_featvis.models import CustomViT, ModelAdapter, TorchvisionViT
from lightning_featvis.objectives.neuron import NeuronObjective
from lightning_featvis.rendering import render
from lightning_featvis.schedule import Octave, linear

# the settings both sides share: the seeds' L1 constant, SGD's rate, the blur's kernel and sigma ramp
CONSTANT = 200.0
LR = 1.0
KERNEL = 3
SIGMA = (2.4, 0.8)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class Setup(NamedTuple):
    """The network and layers one benchmark run uses.

    Attributes:
        adapter: the network (built once per side; random weights).
        layer: target layer of the overhead comparison.
        shallow, deep: target layers of the early-exit comparison, and their labels.
        group: targets per group in the multi-target overhead comparison.
    """

    adapter: ModelAdapter
    layer: str
    shallow: tuple[str, str]
    deep: tuple[str, str]
    group: int = 8


FULL = Setup(
    adapter=TorchvisionViT(name="vit_b_32", weights=None),
    layer="encoder.layers.encoder_layer_11",
    shallow=("encoder.layers.encoder_layer_1", "block 2"),
    deep=("encoder.layers.encoder_layer_10", "block 11"),
)
QUICK = Setup(
    adapter=CustomViT(
        image_size=32, patch_size=4, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    ),
    layer="encoder.layers.encoder_layer_3",
    shallow=("encoder.layers.encoder_layer_1", "block 2"),
    deep=("encoder.layers.encoder_layer_3", "block 4"),
)


# --- featvis side ------------------------------------------------------------------------


class StepTimer(L.Callback):
    """Records when each step starts; consecutive starts bound one whole loop iteration."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(self.clock())


def featvis_step_times(
    objective: NeuronObjective, targets: str, group: int, warmup: int, root: str, clock: Callable[[], float]
) -> list[float]:
    """Seconds per step of one featvis run over one group, warm-up steps dropped.

    The objective is reused across runs so the network is built once; each run allocates
    fresh canvases and a fresh optimizer.
    """
    timer = StepTimer(clock)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,  # the objective's own ImageWriter writes here at group end
        callbacks=[timer, PositionalJitter(), GaussianBlur(kernel_size=KERNEL, sigma=[SIGMA])],
    )
    trainer.fit(objective, datamodule=TargetDataModule(targets=targets, group_size=group))
    # no gap follows the last step's start: the group-end step is never timed
    gaps = [b - a for a, b in zip(timer.starts, timer.starts[1:])]
    return gaps[warmup:]


# --- plain PyTorch side ------------------------------------------------------------------


class _Stop(Exception):
    """Ends the forward pass once the target layer has run."""


def render_step_times(adapter, layer: str, steps: int, warmup: int, root: str,
                      clock: Callable[[], float]) -> list[float]:
    """Seconds per step of the same run as :func:`featvis_step_times` (one target), built by
    ``render()`` from the ``lucent`` recipe with its parts set to the hand-built run's."""
    timer = StepTimer(clock)
    render(adapter, [f"{layer}:neuron=0"], recipe="lucent", steps=steps, callbacks=[timer],
           loss_form="l1", param={"class_path": "lightning_featvis.PixelImage"},
           optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 1.0}},
           AugmentationEnsemble=None, ImageLogger=None, PositionalJitter={},
           GaussianBlur={"kernel_size": KERNEL, "sigma": [SIGMA]}, group_size=1,
           accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
           enable_progress_bar=False, enable_model_summary=False, default_root_dir=root)
    gaps = [b - a for a, b in zip(timer.starts, timer.starts[1:])]
    return gaps[warmup:]


def fixed_cost_per_call(objective: NeuronObjective, adapter, layer: str, root: str, rounds: int) -> tuple[float, float]:
    """Median wall seconds of a whole one-step ``Trainer.fit`` and of a whole one-step ``render()``."""
    fit_times, render_times = [], []
    one = [Octave(steps=1)]
    for _ in range(rounds):
        objective.octaves = one
        start = time.perf_counter()
        featvis_step_times(objective, f"{layer}:neuron=0", 1, 0, root, time.perf_counter)
        fit_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        render_step_times(adapter, layer, 1, 0, root, time.perf_counter)
        render_times.append(time.perf_counter() - start)
    return statistics.median(fit_times), statistics.median(render_times)


def plain_step_times(
    net: nn.Module, layer: str, group: int, size: int, steps: int, warmup: int, clock: Callable[[], float]
) -> list[float]:
    """Seconds per step of the hand-written loop: target ``i`` of ``group`` drives neuron ``i``
    in every patch token of ``layer``; warm-up steps dropped."""
    image = nn.Parameter(torch.randn(group, 3, size, size) / 20 + 0.7)
    optimizer = torch.optim.SGD([image], lr=LR)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    captured: dict[str, torch.Tensor] = {}

    def stop_after(_module, _inputs, output):
        captured["acts"] = output
        raise _Stop

    handle = net.get_submodule(layer).register_forward_hook(stop_after)
    units = torch.arange(group)
    starts = []
    try:
        for step in range(steps):
            starts.append(clock())
            try:
                net((image - mean) / std)
            except _Stop:
                pass
            z = captured["acts"][units, 1:, units]  # [G, patches]; token 0 is the class token
            loss = (CONSTANT - z).abs().sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            sigma = linear(*SIGMA, step, steps)
            with torch.no_grad():
                image.copy_(gaussian_blur(image, [KERNEL, KERNEL], [sigma, sigma]))
        starts.append(clock())
    finally:
        handle.remove()
    return [b - a for a, b in zip(starts[warmup:], starts[warmup + 1 :])]


# --- comparison and report ---------------------------------------------------------------


def interleaved(run_a: Callable[[], list[float]], run_b: Callable[[], list[float]], rounds: int):
    """Step times of both sides from ``rounds`` blocks each, ordered A B, B A, A B, ..."""
    times_a: list[float] = []
    times_b: list[float] = []
    for r in range(rounds):
        order = [(run_a, times_a), (run_b, times_b)]
        for run, times in order if r % 2 == 0 else reversed(order):
            times += run()
    return times_a, times_b


def summary(times: list[float]) -> dict[str, float]:
    """Median, quartiles and minimum in ms."""
    ms = [t * 1000 for t in times]
    q1, median, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    return {"ms": median, "q1": q1, "q3": q3, "min": min(ms), "n": len(ms)}


def row(
    measurement: str,
    a: str,
    times_a: list[float],
    b: str,
    times_b: list[float],
    goal: str,
    met: Callable[[float], bool],
) -> dict:
    """One table row: both sides' medians, quartiles and minima (ms), their ratios A/B and the
    verdict, which goes by the medians' ratio."""
    sa, sb = summary(times_a), summary(times_b)
    ratio = sa["ms"] / sb["ms"]
    return {
        "measurement": measurement,
        "a": a,
        "a_ms": sa["ms"],
        "a_iqr": (sa["q1"], sa["q3"]),
        "a_min": sa["min"],
        "b": b,
        "b_ms": sb["ms"],
        "b_iqr": (sb["q1"], sb["q3"]),
        "b_min": sb["min"],
        "steps_per_side": sa["n"],
        "ratio": ratio,
        # other jobs only ever add time to a step, so on a busy machine the minima are the
        # steadier estimate of what a step costs
        "ratio_of_minima": sa["min"] / sb["min"],
        "goal": goal,
        "met": met(ratio),
    }


def table(rows: Sequence[dict]) -> str:
    def ms(value: float, iqr: tuple[float, float]) -> str:
        return f"{value:.1f} ({iqr[0]:.1f}-{iqr[1]:.1f})"

    lines = [
        "| measurement | A | A ms/step (IQR) | B | B ms/step (IQR) | ratio A/B | goal | met? | ratio A/B of minima |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['measurement']} | {r['a']} | {ms(r['a_ms'], r['a_iqr'])} | {r['b']} | {ms(r['b_ms'], r['b_iqr'])} "
            f"| {r['ratio']:.3f} | {r['goal']} | {'yes' if r['met'] else 'NO'} | {r['ratio_of_minima']:.3f} |"
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
    parser.add_argument("--steps", type=int, default=6, help="timed steps per block (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each block (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="blocks per side of each comparison (default 2: A B B A)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="wall time or this process's CPU time (default wall)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny ViT smoke run instead of ViT-B/32")
    args = parser.parse_args(argv)
    if args.steps < 2 or args.warmup < 0 or args.rounds < 1 or args.threads < 1:
        parser.error("need --steps >= 2, --warmup >= 0, --rounds >= 1, --threads >= 1")
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
    setup = QUICK if args.quick else FULL
    clock = CLOCKS[args.clock]
    print(f"start: {machine()}", flush=True)

    # the final step of a featvis group also measures and saves the images and is not timed,
    # so a group runs one step more than it times
    octaves = [Octave(steps=args.warmup + args.steps + 1)]
    objective = NeuronObjective(network=setup.adapter, layer=setup.layer, octaves=octaves)
    net = setup.adapter.build().eval().requires_grad_(False)
    size, g = setup.adapter.image_size, setup.group
    (shallow, shallow_label), (deep, deep_label) = setup.shallow, setup.deep
    rows = []
    with tempfile.TemporaryDirectory() as root:

        def featvis(targets: str, group: int) -> Callable[[], list[float]]:
            return lambda: featvis_step_times(objective, targets, group, args.warmup, root, clock)

        def plain(group: int) -> Callable[[], list[float]]:
            steps = args.warmup + args.steps
            return lambda: plain_step_times(net, setup.layer, group, size, steps, args.warmup, clock)

        overhead_goal = (">= 0.95", lambda ratio: ratio >= 0.95)
        early_exit_goal = ("<= 0.40", lambda ratio: ratio <= 0.40)
        comparisons = [
            (
                "overhead, 1 target (group 1)",
                "plain PyTorch",
                plain(1),
                "featvis",
                featvis("neuron=0", 1),
                overhead_goal,
            ),
            (
                f"overhead, {g} targets (group {g})",
                "plain PyTorch",
                plain(g),
                "featvis",
                featvis(f"neuron=0-{g - 1}", g),
                overhead_goal,
            ),
            (
                "early exit, featvis, 1 target",
                f"target at {shallow_label}",
                featvis(f"{shallow}:neuron=0", 1),
                f"target at {deep_label}",
                featvis(f"{deep}:neuron=0", 1),
                early_exit_goal,
            ),
        ]
        steps = args.warmup + args.steps + 1
        comparisons.append((
            "render(), 1 target",
            "Trainer.fit",
            featvis(f"{setup.layer}:neuron=0", 1),
            "render()",
            lambda: render_step_times(setup.adapter, setup.layer, steps, args.warmup, root, clock),
            overhead_goal,
        ))
        for measurement, a, run_a, b, run_b, (goal, met) in comparisons:
            times_a, times_b = interleaved(run_a, run_b, args.rounds)
            rows.append(row(measurement, a, times_a, b, times_b, goal, met))
            print(f"done: {measurement}", flush=True)
        fit_call, render_call = fixed_cost_per_call(objective, setup.adapter, setup.layer, root, max(args.rounds, 3))

    print()
    print(table(rows))
    print(f"\nfixed cost of one call (one step, median wall time): Trainer.fit {fit_call * 1000:.0f} ms, "
          f"render() {render_call * 1000:.0f} ms; render() adds {(render_call - fit_call) * 1000:.0f} ms per call "
          "(parsing the config and building the Trainer)")
    if args.quick:
        print("\n(--quick: the tiny model's steps are mostly fixed per-step cost; its ratios say nothing of the goals)")
    print()
    print(
        f"end: {machine()}; {args.clock} clock, {args.rounds} blocks x {args.steps} timed steps per side, "
        f"{args.warmup} warm-up steps per block"
    )
    return rows


if __name__ == "__main__":
    main()
