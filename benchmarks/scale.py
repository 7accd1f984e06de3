"""How featvis renders scale: with the group size, with processes, with target depth, in memory.

Measures, in one run (each section can be picked with ``--sections``):

1. **groups**: targets per minute against the group size (1, 4, 16) for ``NeuronObjective``
   on a randomly initialised torchvision ViT-B/32 (224 px), 16 targets ``neuron=0-15`` of
   ``encoder.layers.encoder_layer_5`` (block 6), ``--steps`` steps per target, one device.
   Ratio against group size 1.
2. **devices**: the same sweep with one process (``devices=1``) against ``--devices``
   processes (``strategy="ddp_spawn"``; on CPU 2 processes, on a GPU machine every GPU).
   Devices shard whole groups, so the scaling ratio is ``targets/min with N / with 1``; with
   16 targets in one group of 16 there is a single group and the second process only steps
   through a padding-group of its own (no gain is possible). On a 2-core CPU machine the
   ratio cannot be linear (2.0): the two processes share the two cores with the parent
   process, the gloo process group and anything else the machine runs.
3. **depth**: ms per optimizer step with the (single) target at block 1, 4, 8 and 12 of
   ViT-B/32, with the probe's early exit (the forward stops at the target layer, the default)
   against the same target with a full forward (``Probe(..., stop=False)``: the objectives
   expose no switch, so the benchmark subclasses ``NeuronObjective`` to turn it off). Speed-up
   ``full / early exit``. The backward covers only the blocks up to the target in both cases:
   the blocks past the target are forward-only work.
4. **memory**: peak memory a render adds while it steps, at 224 px, for ViT-B/32 and ViT-L/16
   (random weights), group size 1 and 4, target at block 1 (the early exit saves most) and at
   the last block (no saving). Each configuration runs in a fresh spawned process. On CUDA the
   figure is ``torch.cuda.max_memory_allocated`` minus the memory allocated when training
   starts (network already on the device); on CPU it is the process's peak resident set
   during training (``VmHWM``, reset through ``/proc/self/clear_refs`` at training start)
   minus its resident set at training start (network built, targets checked, freed heap
   trimmed), so it includes allocator slack and is coarser. Per target = growth / group.

Targets per minute (groups, devices) count the training loop only: from ``on_train_start`` to
``on_train_end`` over all ranks (for N processes: the earliest start to the latest end), so
they include Lightning's per-step work and each group's final measuring/writing step, but not
building the Trainer, spawning processes or building the network; the devices table also
gives the whole ``fit`` wall time, spawning included. Per-step times (depth) are the median
of the gaps between consecutive step starts after ``--warmup`` steps, as in
``step_overhead.py``; the two sides of each depth row run in alternating order.

Run (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py                  # all sections, ~12 min on 1 CPU thread
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --sections groups,depth
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --quick          # tiny ViT smoke run (< 1 min)
    .venv/bin/python benchmarks/scale.py --accelerator gpu                  # ~2.5 min on one H100; every GPU for "devices"

``--quick`` only checks that everything runs: it uses a 32 px 4-block ViT in place of every
network, 4 targets, group sizes 1 and 2 (the devices sweep: group 1 only, memory: group 2
only) and 1-2 steps; its numbers are mostly fixed per-step cost.

Check ``cat /proc/loadavg`` first: another busy process skews every number (and the
two-process sweep most of all). Torch runs on ``--threads`` threads per process (default 1).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import gc
import json
import logging
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

# spawned processes (ddp_spawn, the memory probes) re-import this module by name, so its folder
# must be on their path; spawn hands the parent's sys.path down
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import lightning as L
import torch

from lightning_featvis.data import TargetDataModule
from lightning_featvis.models import CustomViT, ModelAdapter, TorchvisionViT
from lightning_featvis.objectives.neuron import NeuronObjective
from lightning_featvis.probe import Probe
from lightning_featvis.schedule import Octave

SECTIONS = ("groups", "devices", "depth", "memory")
MIB = 2**20


def block(index: int) -> str:
    """Layer name of 1-based block ``index`` of a torchvision ViT."""
    return f"encoder.layers.encoder_layer_{index - 1}"


class Setup(NamedTuple):
    """Networks and layers of one benchmark run.

    Attributes:
        adapter: the network of the groups, devices and depth sections.
        layer: target layer of the groups and devices sweeps.
        targets: how many targets those sweeps render.
        groups: the group sizes swept.
        blocks: 1-based blocks of the depth section.
        memory: ``(label, adapter, number of blocks)`` of the memory section's networks.
        memory_groups: group sizes of the memory section.
        device_groups: group sizes of the devices sweep (default: ``groups``).
    """

    adapter: ModelAdapter
    layer: str
    targets: int
    groups: tuple[int, ...]
    blocks: tuple[int, ...]
    memory: tuple[tuple[str, ModelAdapter, int], ...]
    memory_groups: tuple[int, ...] = (1, 4)
    device_groups: tuple[int, ...] | None = None


FULL = Setup(
    adapter=TorchvisionViT(name="vit_b_32", weights=None),
    layer=block(6),
    targets=16,
    groups=(1, 4, 16),
    blocks=(1, 4, 8, 12),
    memory=(
        ("ViT-B/32", TorchvisionViT(name="vit_b_32", weights=None), 12),
        ("ViT-L/16", TorchvisionViT(name="vit_l_16", weights=None), 24),
    ),
)
_TINY = CustomViT(image_size=32, patch_size=4, num_layers=4, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10)
QUICK = Setup(
    adapter=_TINY,
    layer=block(3),
    targets=4,
    groups=(1, 2),
    blocks=(1, 2, 4),
    memory=(("tiny ViT 32 px", _TINY, 4),),
    memory_groups=(2,),
    device_groups=(1,),  # spawning 2 processes takes seconds: one sweep point
)


def trainer_options(root: str) -> dict:
    return {
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": root,  # the objective's own ImageWriter writes here at group end
    }


def quiet() -> None:
    """Lightning's per-fit banners ("GPU available: ...") and deprecation notes from inside
    Lightning would bury the tables."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in (r".*all_gather is deprecated.*", r".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message=message)


# --- callbacks (pickled into spawned processes, hence module level) ----------------------


class LoopTimer(L.Callback):
    """Writes when this rank's training loop starts and ends to ``folder/rank<r>.json``; also
    sets the rank's torch thread count (spawned processes do not inherit it)."""

    def __init__(self, folder: str, threads: int) -> None:
        self.folder, self.threads = folder, threads
        self.start = 0.0

    def setup(self, trainer, pl_module, stage) -> None:
        torch.set_num_threads(self.threads)
        quiet()

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.time()

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        record = {"start": self.start, "end": time.time(), "steps": trainer.global_step}
        Path(self.folder, f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


class StepTimer(L.Callback):
    """Records when each step starts; consecutive starts bound one whole loop iteration."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.starts.append(time.perf_counter())


class PeakMemory(L.Callback):
    """Peak memory the training loop adds, in bytes: CUDA allocated, or the CPU process's
    resident set (``VmHWM`` after resetting it through ``/proc/self/clear_refs``; where that
    is not possible, ``ru_maxrss``, whose baseline may then include an earlier, higher peak)."""

    def __init__(self) -> None:
        self.base = self.peak = 0
        self.kind = ""

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
        raise KeyError(field)

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            self.kind = "CUDA allocated"
            return
        self.kind = "CPU peak RSS"
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so growth shows as RSS
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
            self.base = self._status("VmRSS")
        except OSError:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            return
        try:
            self.peak = self._status("VmHWM")
        except (OSError, KeyError):
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class FullForwardNeuron(NeuronObjective):
    """``NeuronObjective`` without the early exit: every forward runs the whole network."""

    def activations(self, view: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
        key = tuple(layers)
        if key not in self._probes:
            self._probes[key] = Probe(self.net, layers, stop=False)
        return self._probes[key](self.network.normalize(view))


# --- sections ----------------------------------------------------------------------------


def throughput(
    setup: Setup, group: int, devices: int, args: argparse.Namespace
) -> dict:
    """Render ``setup.targets`` targets of ``setup.layer`` in groups of ``group`` on ``devices``
    processes; return loop seconds, fit seconds and targets per minute."""
    objective = NeuronObjective(network=setup.adapter, layer=setup.layer, octaves=[Octave(steps=args.steps)])
    extra = {"strategy": "ddp_spawn"} if devices > 1 else {}
    with tempfile.TemporaryDirectory() as root:
        timings = Path(root, "timings")
        timings.mkdir()
        trainer = L.Trainer(
            accelerator=args.accelerator,
            devices=devices,
            callbacks=[LoopTimer(str(timings), args.threads)],
            **extra,
            **trainer_options(root),
        )
        started = time.perf_counter()
        trainer.fit(objective, datamodule=TargetDataModule(targets=f"neuron=0-{setup.targets - 1}", group_size=group))
        fit_s = time.perf_counter() - started
        records = [json.loads(p.read_text()) for p in sorted(timings.glob("rank*.json"))]
    if len(records) != devices:
        raise RuntimeError(f"expected timings from {devices} ranks, got {len(records)}")
    loop_s = max(r["end"] for r in records) - min(r["start"] for r in records)
    return {
        "group": group,
        "devices": devices,
        "loop_s": loop_s,
        "fit_s": fit_s,
        "targets_per_min": setup.targets / loop_s * 60,
    }


def depth_step_times(objective_class: type, setup: Setup, layer: str, args: argparse.Namespace) -> list[float]:
    """Seconds per step of one target at ``layer``, warm-up steps and the final measuring
    step dropped."""
    steps = args.warmup + args.depth_steps + 1  # the last step also measures and writes: not timed
    objective = objective_class(network=setup.adapter, layer=layer, octaves=[Octave(steps=steps)])
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(accelerator=args.accelerator, devices=1, callbacks=[timer], **trainer_options(root))
        trainer.fit(objective, datamodule=TargetDataModule(targets="neuron=0", group_size=1))
    gaps = [b - a for a, b in zip(timer.starts, timer.starts[1:])]
    return gaps[args.warmup :]


def memory_probe(adapter: ModelAdapter, layer: str, group: int, steps: int, accelerator: str, threads: int) -> dict:
    """Run in a fresh process: one render of ``group`` targets; the peak memory it added."""
    torch.set_num_threads(threads)
    quiet()
    probe = PeakMemory()
    objective = NeuronObjective(network=adapter, layer=layer, octaves=[Octave(steps=steps)])
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(accelerator=accelerator, devices=1, callbacks=[probe], **trainer_options(root))
        trainer.fit(objective, datamodule=TargetDataModule(targets=f"neuron=0-{group - 1}", group_size=group))
    # (the kind comes from the callback: after fit the module is back on the CPU)
    return {"kind": probe.kind, "base": probe.base, "peak": probe.peak}


def in_fresh_process(function: Callable, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def warm_up(setup: Setup, args: argparse.Namespace) -> None:
    """An untimed one-step render, so the first timed run does not pay for first-call work
    (lazy initialisation, the allocator's first growth)."""
    objective = NeuronObjective(network=setup.adapter, layer=setup.layer, octaves=[Octave(steps=1)])
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(accelerator=args.accelerator, devices=1, **trainer_options(root))
        trainer.fit(objective, datamodule=TargetDataModule(targets="neuron=0", group_size=1))


def run_groups(setup: Setup, args: argparse.Namespace, cache: dict) -> list[dict]:
    rows = []
    for group in setup.groups:
        key = (group, 1)
        if key not in cache:
            cache[key] = throughput(setup, group, 1, args)
        rows.append(dict(cache[key]))
        print(f"done: groups, group {group}", flush=True)
    base = rows[0]["targets_per_min"]
    for r in rows:
        r["section"], r["ratio"] = "groups", r["targets_per_min"] / base
    return rows


def run_devices(setup: Setup, args: argparse.Namespace, devices: int, cache: dict) -> list[dict]:
    rows = []
    for group in setup.device_groups or setup.groups:
        # alternate which side runs first, so a drifting load penalises both alike
        order = [(group, 1), (group, devices)]
        for key in order if len(rows) % 2 == 0 else reversed(order):
            if key not in cache:
                cache[key] = throughput(setup, *key, args)
        one, many = cache[(group, 1)], cache[(group, devices)]
        rows.append(
            {
                "section": "devices",
                "group": group,
                "devices": devices,
                "one_targets_per_min": one["targets_per_min"],
                "many_targets_per_min": many["targets_per_min"],
                "one_fit_s": one["fit_s"],
                "many_fit_s": many["fit_s"],
                "ratio": many["targets_per_min"] / one["targets_per_min"],
                "groups": -(-setup.targets // group),
            }
        )
        print(f"done: devices, group {group}", flush=True)
    return rows


def run_depth(setup: Setup, args: argparse.Namespace) -> list[dict]:
    rows = []
    for i, b in enumerate(setup.blocks):
        sides = [(NeuronObjective, []), (FullForwardNeuron, [])]
        for objective_class, times in sides if i % 2 == 0 else reversed(sides):
            times += depth_step_times(objective_class, setup, block(b), args)
        (_, early), (_, full) = sides
        early_ms, full_ms = statistics.median(early) * 1000, statistics.median(full) * 1000
        rows.append(
            {
                "section": "depth",
                "block": b,
                "early_ms": early_ms,
                "full_ms": full_ms,
                "early_min_ms": min(early) * 1000,
                "full_min_ms": min(full) * 1000,
                "speedup": full_ms / early_ms,
                "steps": len(early),
            }
        )
        print(f"done: depth, block {b}", flush=True)
    return rows


def run_memory(setup: Setup, args: argparse.Namespace) -> list[dict]:
    rows = []
    for label, adapter, blocks in setup.memory:
        for position, b in (("early", 1), ("late", blocks)):
            for group in setup.memory_groups:
                result = in_fresh_process(
                    memory_probe, adapter, block(b), group, args.memory_steps, args.accelerator, args.threads
                )
                growth = result["peak"] - result["base"]
                rows.append(
                    {
                        "section": "memory",
                        "model": label,
                        "block": b,
                        "position": position,
                        "group": group,
                        "kind": result["kind"],
                        "base_mib": result["base"] / MIB,
                        "growth_mib": growth / MIB,
                        "per_target_mib": growth / group / MIB,
                    }
                )
                print(f"done: memory, {label} block {b} group {group}", flush=True)
    return rows


# --- report ------------------------------------------------------------------------------


def tables(rows: Sequence[dict], setup: Setup, args: argparse.Namespace) -> str:
    by = {s: [r for r in rows if r["section"] == s] for s in SECTIONS}
    parts = []
    if by["groups"]:
        lines = [
            f"Targets/min by group size ({setup.targets} targets of {setup.layer}, {args.steps} steps each, 1 device)",
            "",
            "| group size | loop s | targets/min | ratio vs group 1 |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['group']} | {r['loop_s']:.2f} | {r['targets_per_min']:.1f} | {r['ratio']:.2f} |" for r in by["groups"]
        ]
        parts.append("\n".join(lines))
    if by["devices"]:
        n = by["devices"][0]["devices"]
        lines = [
            (f"Targets/min with 1 vs {n} processes (ddp_spawn, {args.accelerator}; {setup.targets} targets, "
            f"{args.steps} steps each)"),
            "",
            (f"| group size | groups | 1 process targets/min | {n} processes targets/min | scaling {n}/1 "
            f"| 1 process fit s | {n} processes fit s |"),
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['group']} | {r['groups']} | {r['one_targets_per_min']:.1f} | {r['many_targets_per_min']:.1f} "
            f"| {r['ratio']:.2f} | {r['one_fit_s']:.2f} | {r['many_fit_s']:.2f} |"
            for r in by["devices"]
        ]
        parts.append("\n".join(lines))
    if by["depth"]:
        steps = by["depth"][0]["steps"]
        lines = [
            f"ms/step by target depth, early exit vs full forward (1 target; median of {steps} steps per side)",
            "",
            ("| target block | early exit ms/step | full forward ms/step | speed-up full/early | early/full | "
            "min early / min full ms |"),
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| block {r['block']} | {r['early_ms']:.1f} | {r['full_ms']:.1f} | {r['speedup']:.2f} "
            f"| {1 / r['speedup']:.2f} | {r['early_min_ms']:.1f} / {r['full_min_ms']:.1f} |"
            for r in by["depth"]
        ]
        parts.append("\n".join(lines))
    if by["memory"]:
        kind = by["memory"][0]["kind"]
        lines = [
            f"Peak memory added by a render ({kind}, fresh process each, {args.memory_steps} steps)",
            "",
            f"| model | target | group size | at train start MiB | peak growth MiB ({kind}) | per target MiB |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['model']} | block {r['block']} ({r['position']}) | {r['group']} | {r['base_mib']:.0f} "
            f"| {r['growth_mib']:.2f} | {r['per_target_mib']:.2f} |"
            for r in by["memory"]
        ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def machine() -> str:
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return (
        f"torch {torch.__version__}, lightning {L.__version__}, threads {torch.get_num_threads()}, "
        f"CPUs {os.cpu_count()}, GPUs {gpus}, loadavg {load}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--steps", type=int, default=10, help="steps per target in groups/devices (default 10)")
    parser.add_argument("--depth-steps", type=int, default=6, help="timed steps per side of a depth row (default 6)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before the depth timing (default 2)")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps of each memory run (default 2)")
    parser.add_argument("--accelerator", choices=("auto", "cpu", "gpu"), default="auto")
    parser.add_argument(
        "--devices", type=int, default=None, help="processes of the devices section (default: 2 on CPU, every GPU)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process (default 1)")
    parser.add_argument("--quick", action="store_true", help="tiny ViT, 2 steps: only checks that it runs")
    parser.add_argument("--out", help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--sections: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(SECTIONS)}")
    if args.quick:
        args.steps, args.depth_steps, args.warmup, args.memory_steps = 2, 2, 1, 1
    if min(args.steps, args.depth_steps, args.memory_steps, args.threads) < 1 or args.warmup < 0:
        parser.error("need --steps, --depth-steps, --memory-steps, --threads >= 1 and --warmup >= 0")
    if args.accelerator == "auto":
        args.accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if args.devices is None:
        args.devices = torch.cuda.device_count() if args.accelerator == "gpu" else 2
    return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the chosen sections, print their tables, return their rows (each with ``section``)."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    omp = os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # spawned processes start with this many
    try:
        return run(args)
    finally:
        # a test calling main() must not leave the rest of its process on one thread
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp


def run(args: argparse.Namespace) -> list[dict]:
    quiet()
    setup = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"start: {machine()}; sections {','.join(args.sections)}", flush=True)
    cache: dict[tuple[int, int], dict] = {}  # (group, devices) -> throughput: one run serves two tables
    rows: list[dict] = []
    notes = []
    if {"groups", "devices", "depth"} & set(args.sections):
        warm_up(setup, args)
    if "devices" in args.sections:
        if args.devices < 2:
            notes.append(f"devices: skipped, only {args.devices} {args.accelerator} device(s)")
            devices_rows = []
        else:
            devices_rows = run_devices(setup, args, args.devices, cache)
    if "groups" in args.sections:
        rows += run_groups(setup, args, cache)
    if "devices" in args.sections:
        rows += devices_rows
    if "depth" in args.sections:
        rows += run_depth(setup, args)
    if "memory" in args.sections:
        rows += run_memory(setup, args)

    report = tables(rows, setup, args)
    if notes:
        report += "\n\n" + "\n".join(f"({n})" for n in notes)
    if args.quick:
        report += "\n\n(--quick: a tiny 32 px ViT; the numbers are mostly fixed per-step cost and say nothing of scaling)"
    print()
    print(report)
    print()
    print(f"end: {machine()}; {time.perf_counter() - started:.0f} s")
    if args.out:
        Path(args.out).write_text(f"{report}\n\n{machine()}\n")
    return rows


if __name__ == "__main__":
    main()
