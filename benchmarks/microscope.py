"""Throughput of the microscope: the dataset-examples pass, and whole-model sweeps of renders.

Measures, in one run, side by side:

1. **Examples pass against a bare loop.** The dataset-examples pass (``featvis examples``: a
   Lightning prediction run reading every target, keeping top-k, bottom-k and histograms)
   against a bare ``inference_mode`` forward loop over the same DataLoader to the same
   (deepest) layer, for the whole-model sweep's targets (every block output and MLP neuron of
   the digits ViT, 1280 targets) on the 1797 digits. Streaming images per second of both
   (from the first batch to the last), ratio ``pass / bare``; goal >= 0.9. The pass's fixed
   costs (setup, the per-patch maps of the examples, writing) are printed beside.
2. **Whole-model sweep of the digits ViT** (every block output and MLP neuron: 4 x 64 + 4 x 256
   = 1280 targets) with the quickstart's recipe (``best``: 4 augmented copies per step) at group
   sizes 1 to 64: per layer and group size the seconds per step, from which targets per minute
   and the whole sweep's time at the recipe's 300 steps; the FLOPs of a real step (counted by
   ``torch.utils.flop_counter`` inside the run: forward, backward to the canvas, penalties)
   per second as a fraction of this machine's measured matmul peak (float32, same threads);
   and the framework's share of the step: 1 - (the same network's bare forward and backward of
   the same views) / (the step).
3. **ViT-B/32 sweep on a GPU** (``--accelerator gpu``; random weights, every block-output
   neuron, 768 x 12 targets): the same figures in ``32-true`` and ``bf16-mixed``, eager and with
   :class:`~lightning_featvis.CompileNetwork`, the fraction of the GPU's measured bf16 matmul
   peak (goal >= 0.30 at the best group size) and the full sweep's time. Without a GPU this
   part runs a few steps of it on the CPU (float32, eager) so the code is exercised, and says
   that the GPU figures were not measured.

Run (from the repository root, alone on the machine; ~6 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/microscope.py
    .venv/bin/python benchmarks/microscope.py --quick          # seconds: checks that it runs
    .venv/bin/python benchmarks/microscope.py --accelerator gpu --part vit-b

Shapes: G targets in a group, c augmented copies per target.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.flop_counter import FlopCounterMode

from lightning_featvis import CompileNetwork, NeuronObjective, render
from lightning_featvis.data import TargetDataModule
from lightning_featvis.microscope.examples_pass import (
    ExamplesFolder,
    ExamplesPass,
    ImageSourceData,
    fingerprint,
)
from lightning_featvis.models import TorchvisionViT
from lightning_featvis.probe import Probe
from lightning_featvis.trainer import FeatvisTrainer
from lightning_featvis.zoo.digits import DigitsViT

BLOCKS = [f"encoder.layers.encoder_layer_{i}" for i in range(4)]
SWEEP = [f"{b}:neuron=*" for b in BLOCKS] + [f"{b}.mlp.1:neuron=*" for b in BLOCKS]
GROUPS = (1, 2, 4, 8, 16, 32, 64)
QUICKSTART = ["heads.head:class=0-9", "encoder.layers.encoder_layer_3:neuron=0-3",
              "encoder.layers.encoder_layer_1:neuron=0 patch=27", "encoder.layers.encoder_layer_1:patch=27"]
RECIPE_STEPS = 300  # the quickstart's steps per target


def quiet() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


# --- 1. the examples pass ----------------------------------------------------------------------


class StreamTimer(L.Callback):
    """When the first batch starts and the last one ends."""

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            self.start = time.perf_counter()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.end = time.perf_counter()


def examples_pass_seconds(targets: Sequence[str], batch_size: int, root: str) -> tuple[float, float, int]:
    """Streaming seconds and whole seconds of one examples pass, and the images read."""
    start = time.perf_counter()
    objective = NeuronObjective(DigitsViT())
    datamodule = TargetDataModule(list(targets))
    parsed = datamodule.parse(objective.run_request(datamodule.data()))
    data = ImageSourceData("digits", 32, batch_size)
    examples = ExamplesPass(objective, parsed, 9, len(data.dataset))
    folder = tempfile.mkdtemp(dir=root)
    timer = StreamTimer()
    trainer = FeatvisTrainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder,
                             callbacks=[timer, ExamplesFolder(folder, "digits", fingerprint(examples, "digits", 32))])
    trainer.predict(examples, datamodule=data, return_predictions=False)
    return timer.end - timer.start, time.perf_counter() - start, len(data.dataset)


def bare_loop_seconds(targets: Sequence[str], batch_size: int) -> float:
    """Seconds of a bare inference_mode loop over the same DataLoader to the same deepest layer."""
    objective = NeuronObjective(DigitsViT())
    datamodule = TargetDataModule(list(targets))
    parsed = datamodule.parse(objective.run_request(datamodule.data()))
    net, adapter = objective.build_network(), objective.network
    probe = Probe(net, sorted({t.layer for t in parsed}))
    loader = ImageSourceData("digits", 32, batch_size).predict_dataloader()
    start = None
    with torch.inference_mode():
        for images, _ in loader:
            start = start or time.perf_counter()
            probe(adapter.normalize(images))
    return time.perf_counter() - start


def part_examples(rounds: int, batch_size: int, sets: Sequence[tuple[str, Sequence[str]]]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for name, targets in sets:
            bare, streamed, whole = [], [], []
            for r in range(rounds):  # alternating, so a drifting load hits both alike
                if r % 2 == 0:
                    bare.append(bare_loop_seconds(targets, batch_size))
                s, w, images = examples_pass_seconds(targets, batch_size, root)
                streamed.append(s)
                whole.append(w)
                if r % 2 == 1:
                    bare.append(bare_loop_seconds(targets, batch_size))
            rows.append((name, images, statistics.median(bare), statistics.median(streamed), statistics.median(whole)))
    print(f"\n### 1. Dataset-examples pass against a bare loop ({rows[0][1]} digits, batch {batch_size}, "
          f"median of {rounds})\n")
    print("| targets | bare loop, images/s | examples pass, images/s | ratio pass / bare | whole pass (fixed costs too) |")
    print("|---|---|---|---|---|")
    for name, images, b, s, w in rows:
        print(f"| {name} | {images / b:.0f} | {images / s:.0f} | **{b / s:.2f}** | {w:.2f} s |")
    print("\nGoal: ratio >= 0.9. Streaming: from the first batch to the last. The whole pass adds the Trainer's "
          "setup, the per-patch maps of the examples (one more forward over them) and writing PNGs and tables.")


# --- 2. and 3. sweeps of renders ---------------------------------------------------------------


class StepProbe(L.Callback):
    """Step start times, and the FLOPs of one step (counted inside the run)."""

    def __init__(self, counted_step: int) -> None:
        self.counted_step, self.starts, self.flops = counted_step, [], 0
        self.counter: FlopCounterMode | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())
        if batch_idx == self.counted_step:
            self.counter = FlopCounterMode(display=False)
            self.counter.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.counter is not None and batch_idx == self.counted_step:
            self.counter.__exit__(None, None, None)
            self.flops = self.counter.get_total_flops()
            self.counter = None


def step_figures(model, layer: str, group: int, steps: int, warmup: int, recipe: str | None, copies: int,
                 size: int, accelerator: str, precision: str, compiled: bool) -> dict:
    """One render of ``group`` neurons of ``layer``: seconds per step (median after the warm-up),
    FLOPs per step, and the bare forward and backward of the same views."""
    probe = StepProbe(counted_step=warmup)
    callbacks = [probe] + ([CompileNetwork()] if compiled else [])
    options = dict(recipe=recipe, steps=steps, group_size=group, callbacks=callbacks, logger=False,
                   enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   accelerator=accelerator, devices=1, precision=precision, ImageLogger=None, ImageWriter=None)
    render(model, [f"{layer}:neuron=0-{group - 1}"], **options)
    gaps = [b - a for a, b in zip(probe.starts, probe.starts[1:])][warmup + 1:]  # the counted step is slower
    step = statistics.median(gaps)
    return {"step": step, "flops": probe.flops, "bare": bare_step(model, layer, group * copies, size, accelerator,
                                                                   precision)}


def bare_step(model, layer: str, views: int, size: int, accelerator: str, precision: str, repeats: int = 5) -> float:
    """Seconds of the network's bare forward (to ``layer``) and backward to the input for ``views`` images."""
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    net = model.build().eval().requires_grad_(False).to(device)
    probe = Probe(net, [layer])
    x = torch.rand(views, 3, size, size, device=device, requires_grad=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    times = []
    for i in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        with autocast:
            out = probe(model.normalize(x))[layer]
        out.float().mean().backward()
        sync(device)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """This machine's measured matmul FLOP/s (``n x n`` by ``n x n``, best of ``repeats``)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def layer_sizes(model, layers: Sequence[str]) -> dict[str, int]:
    objective = NeuronObjective(model)
    datamodule = TargetDataModule([f"{layer}:neuron=*" for layer in layers])
    parsed = datamodule.parse(objective.run_request(datamodule.data()))
    return {layer: sum(t.layer == layer for t in parsed) for layer in layers}


def sweep_table(title: str, model, layers: Sequence[str], groups: Sequence[int], steps: int, warmup: int,
                recipe: str | None, copies: int, size: int, accelerator: str, precision: str, compiled: bool,
                peak: float, steps_per_target: int) -> list[dict]:
    """Per group size: the whole sweep's targets per minute, peak fraction and framework share."""
    sizes = layer_sizes(model, layers)
    rows = []
    for group in groups:
        figures = {layer: step_figures(model, layer, group, steps, warmup, recipe, copies, size, accelerator,
                                       precision, compiled) for layer in layers}
        # every layer's targets in groups of `group`, each group steps_per_target steps
        seconds = sum(math.ceil(sizes[layer] / group) * steps_per_target * figures[layer]["step"] for layer in layers)
        step_time = sum(f["step"] for f in figures.values())
        flops = sum(f["flops"] for f in figures.values())
        bare = sum(f["bare"] for f in figures.values())
        rows.append({"group": group, "targets_per_min": sum(sizes.values()) / seconds * 60, "sweep_s": seconds,
                     "peak": flops / step_time / peak, "framework": 1 - bare / step_time})
    print(f"\n### {title}\n")
    print("| group size | targets / min | whole sweep | fraction of matmul peak | framework's share of a step |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['group']} | {row['targets_per_min']:.0f} | {duration(row['sweep_s'])} | {row['peak']:.3f} | "
              f"{row['framework']:.2f} |")
    return rows


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def part_digits(groups: Sequence[int], steps: int, warmup: int, layers: Sequence[str]) -> None:
    peak = matmul_peak(torch.device("cpu"), torch.float32)
    print(f"\nmeasured float32 matmul peak here: {peak / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    sweep_table(f"2. Whole-model sweep of the digits ViT ({', '.join(layers)}: recipe best, 4 copies per step; "
                f"timed over {steps - warmup - 2} steps per layer and group size, extrapolated to "
                f"{RECIPE_STEPS} steps per target)", DigitsViT(), layers, groups, steps, warmup, "best", 4, 32, "cpu",
                "32-true", False, peak, RECIPE_STEPS)


def part_vit_b(accelerator: str, groups: Sequence[int], steps: int, warmup: int, layers: Sequence[str]) -> None:
    model = TorchvisionViT(name="vit_b_32", weights=None)
    if accelerator != "gpu":
        peak = matmul_peak(torch.device("cpu"), torch.float32)
        sweep_table(f"3. ViT-B/32 (random weights) on the CPU, float32, eager ({', '.join(layers)}; "
                    "no GPU here: the GPU's figures were not measured)", model, layers, groups, steps, warmup,
                    "lucent", 1, 224, "cpu", "32-true", False, peak, 512)
        return
    for precision, dtype in (("32-true", torch.float32), ("bf16-mixed", torch.bfloat16)):
        peak = matmul_peak(torch.device("cuda"), dtype, n=8192)
        print(f"\nmeasured {dtype} matmul peak of the GPU: {peak / 1e12:.1f} TFLOP/s")
        for compiled in (False, True):
            sweep_table(f"3. ViT-B/32 (random weights), every block-output neuron, {precision}, "
                        f"{'torch.compile' if compiled else 'eager'}", model, layers, groups, steps, warmup, "lucent",
                        1, 224, "gpu", precision, compiled, peak, 512)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps and sizes: checks that it runs")
    parser.add_argument("--part", choices=("all", "examples", "digits", "vit-b"), default="all")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    quiet()
    torch.manual_seed(0)
    quick = args.quick
    if args.part in ("all", "examples"):
        sets = [("the quickstart's 16", QUICKSTART), (f"whole-model sweep, {4 * 64 + 4 * 256}", SWEEP)]
        part_examples(1 if quick else args.rounds, 256, sets[:1] if quick else sets)
    if args.part in ("all", "digits"):
        part_digits((1, 4) if quick else GROUPS, 4 if quick else 10, 1 if quick else 2,
                    BLOCKS[:1] if quick else BLOCKS + [f"{b}.mlp.1" for b in BLOCKS])
    if args.part in ("all", "vit-b"):
        vit_layers = [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
        cpu = args.accelerator != "gpu"
        part_vit_b(args.accelerator, (1,) if quick else (1, 2) if cpu else (1, 4, 16, 64), 4 if quick or cpu else 12,
                   1 if quick or cpu else 3, vit_layers[:1] if quick else vit_layers[::11] if cpu else vit_layers)


if __name__ == "__main__":
    main()
