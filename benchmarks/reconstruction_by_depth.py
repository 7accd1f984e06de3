"""Reconstruction fidelity by depth and from the first 28 tokens, measured offline.

Runs the reconstruction configs through the ``featvis`` CLI (each run is exactly the command
printed before it) and gathers every run's ``reconstruction.csv`` (written by
``ReconstructionReport``) into tables: PSNR (dB), SSIM and the seeds' criterion
``||O(a) - O(a_g)|| < ||O(a) - O(a')||`` (``a' = a + N(0, 1/18)``) per layer.

Suites:

- ``digits`` (about 2 minutes): the embedded digits ViT, mixer and GPT-2-style stack, trained
  and untrained, the mixer also without LayerNorm, reconstructing held-out digit
  ``digits:1791`` from the stem and every block; and the first-28-tokens test on the trained
  ViT and mixer.
- ``224`` (about 45 minutes on one shared CPU core): randomly initialised ViT-B/32 and a feed-forward
  mixer of the same geometry (patch 32, width 768, 12 blocks, 49 patches) at 224 px
  reconstructing scikit-learn's ``china.jpg`` from the stem and every block, and the
  first-28-tokens test on both.

Run (from the repository root)::

    .venv/bin/python benchmarks/reconstruction_by_depth.py --suite digits
    .venv/bin/python benchmarks/reconstruction_by_depth.py --suite 224
    .venv/bin/python benchmarks/reconstruction_by_depth.py --suite digits --quick   # 2 steps

Each run writes its images, CSV and TensorBoard log under ``--root`` (default
``benchmark_logs/reconstruction``); the tables are printed and written to ``tables.md`` there.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lightning_featvis.cli import main as featvis

DIGITS = "configs/reconstruction"
SEEDS = "configs/seeds"
UNTRAINED = ["--model.network.init_args.pretrained", "false"]
NO_LAYERNORM = ["--model.init_args.remove_layernorm", "true"]
# whole network dicts: jsonargparse turns a nested `--model.network.init_args.weights null`
# into the string "None"
RANDOM_VIT_B32 = ["--model.network", '{"class_path": "lightning_featvis.models.TorchvisionViT", '
                  '"init_args": {"name": "vit_b_32", "weights": null}}']
MIXER_B32 = ["--model.network", '{"class_path": "lightning_featvis.models.feedforward.FeedForwardMixer", '
             '"init_args": {"size": null, "patch_size": 32}}']


@dataclass
class Run:
    """One ``featvis fit`` of a config; ``table`` says which table its rows go to.

    For first-28 runs, ``photo`` and ``patch`` locate the rows the 28 tokens do not cover
    (patch rows 4 and below in both geometries): their PSNR is reported separately."""

    label: str
    config: str
    table: str
    args: list[str] = field(default_factory=list)
    photo: str | None = None
    patch: int = 0


def first28(blocks: list[str]) -> list[str]:
    """Targets: the first 28 tokens (class token + patches 0-26) of each block, then all of the first."""
    targets = [f"{b}:patch=[0-26] cls=1" for b in blocks] + [f"{blocks[0]}:all"]
    return ["--data.init_args.targets", "[" + ", ".join(f'"{t}"' for t in targets) + "]"]


DIGITS_VIT_BLOCKS = [f"encoder.layers.encoder_layer_{i}" for i in (0, 1, 3)]
B32_VIT_BLOCKS = [f"encoder.layers.encoder_layer_{i}" for i in (0, 3, 7)]

SUITES = {
    "digits": [
        Run("ViT", f"{DIGITS}/digits_vit_by_depth.yaml", "depth"),
        Run("ViT untrained", f"{DIGITS}/digits_vit_by_depth.yaml", "depth", UNTRAINED),
        Run("mixer", f"{DIGITS}/digits_mixer_by_depth.yaml", "depth"),
        Run("mixer no LN", f"{DIGITS}/digits_mixer_by_depth.yaml", "depth", NO_LAYERNORM),
        Run("mixer untrained", f"{DIGITS}/digits_mixer_by_depth.yaml", "depth", UNTRAINED),
        Run("GPT-2 stack", f"{DIGITS}/digits_gpt2_by_depth.yaml", "depth"),
        Run("GPT-2 untrained", f"{DIGITS}/digits_gpt2_by_depth.yaml", "depth", UNTRAINED),
        Run("ViT", f"{DIGITS}/digits_vit_by_depth.yaml", "first28",
            first28(DIGITS_VIT_BLOCKS) + ["--data.init_args.group_size", "4"], photo="digits:1791", patch=4),
        Run("mixer", f"{DIGITS}/digits_mixer_by_depth.yaml", "first28",
            first28([f"blocks.{i}" for i in (0, 1, 3)]) + ["--data.init_args.group_size", "4"], photo="digits:1791", patch=4),
    ],
    "224": [
        Run("ViT-B/32 random", f"{SEEDS}/vit_b32_reconstruction_by_depth.yaml", "depth", RANDOM_VIT_B32),
        Run("mixer-B/32 random", f"{SEEDS}/ff_base_reconstruction_by_depth.yaml", "depth", MIXER_B32),
        Run("ViT-B/32 random", f"{SEEDS}/vit_b32_first28_reconstruction_l1.yaml", "first28",
            RANDOM_VIT_B32 + first28(B32_VIT_BLOCKS), photo="china.jpg", patch=32),
        Run("mixer-B/32 random", f"{SEEDS}/ff_base_first28_reconstruction_l1.yaml", "first28",
            MIXER_B32 + first28([f"blocks.{i}" for i in (0, 3, 7)]), photo="china.jpg", patch=32),
    ],
}


def latest_images(root: Path) -> Path:
    versions = sorted((root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1] / "images"


def add_uncovered_psnr(rows: list[dict], images: Path, run: Run) -> None:
    """PSNR of the pixel rows below patch row 4 (never covered by the first 28 tokens), from
    the written PNGs, into each row as ``uncovered``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from lightning_featvis.images import load_photo

    with (images / "manifest.csv").open() as f:
        files = {r["target"]: r["file"] for r in csv.DictReader(f)}
    for row in rows:
        image = load_photo(str(images / files[row["target"]]))  # square PNG: read as is
        photo = load_photo(run.photo, image.shape[-1])
        top = 4 * run.patch
        row["uncovered"] = float(peak_signal_noise_ratio(image[..., top:, :], photo[..., top:, :], data_range=1.0))


def cell(row: dict) -> str:
    text = f"{float(row['psnr']):.1f} / {float(row['ssim']):.2f} / {'yes' if row['accurate'] == 'True' else 'no'}"
    return text + (f" / {row['uncovered']:.1f}" if "uncovered" in row else "")


def position_name(index: int) -> str:
    return "stem" if index == 0 else f"block {index}"


def first28_name(target: str) -> str:
    layer, unit = target.split(":")
    block = int(layer.rsplit("_", 1)[-1].rsplit(".", 1)[-1]) + 1
    return f"block {block}, {'first 28 tokens' if 'patch' in unit else 'all tokens'}"


def tables(results: dict[str, list[tuple[str, list[dict]]]]) -> str:
    """Markdown tables: rows are layers (by position in the config), columns are runs."""
    out = []
    for table, runs in results.items():
        if not runs:
            continue
        if table == "depth":
            out.append("Reconstruction by depth (each cell: PSNR dB / SSIM / accurate by the seeds' criterion)\n")
        else:
            out.append("First 28 tokens vs all tokens (each cell: PSNR dB / SSIM / accurate by the seeds' "
                       "criterion / PSNR dB of the rows below patch row 4, which the 28 tokens do not cover)\n")
        out.append("| layer | " + " | ".join(label for label, _ in runs) + " |")
        out.append("|---|" + "---|" * len(runs))
        for i in range(max(len(rows) for _, rows in runs)):
            names = [rows[i]["target"] for _, rows in runs if i < len(rows)]
            name = position_name(i) if table == "depth" else first28_name(names[0])
            cells = [cell(rows[i]) if i < len(rows) else "" for _, rows in runs]
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def run_root(root: Path, run: Run) -> Path:
    return root / run.table / run.label.replace(" ", "_").replace("/", "")


def collect(root: Path, run: Run) -> list[dict]:
    """The rows of ``run``'s latest ``reconstruction.csv`` (plus ``uncovered`` for first-28 runs)."""
    images = latest_images(run_root(root, run))
    with (images / "reconstruction.csv").open() as f:
        rows = list(csv.DictReader(f))
    if run.photo:
        add_uncovered_psnr(rows, images, run)
    return rows


def main(argv: list[str] | None = None) -> dict[str, list[tuple[str, list[dict]]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), default="digits")
    parser.add_argument("--root", default="benchmark_logs/reconstruction")
    parser.add_argument("--quick", action="store_true", help="2 steps per run: checks that everything runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tabulate", action="store_true", help="only rebuild the tables from earlier runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.root) / args.suite
    results: dict[str, list[tuple[str, list[dict]]]] = {"depth": [], "first28": []}
    for run in SUITES[args.suite]:
        command = ["fit", "--config", run.config, *run.args, "--trainer.default_root_dir", str(run_root(root, run)),
                   "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
        if args.quick:
            command += ["--model.init_args.octaves", '[{"steps": 2}]']
        print(("# " if args.tabulate else "") + "featvis " + " ".join(f"'{a}'" if " " in a or "[" in a or "{" in a else a for a in command), flush=True)
        if not args.tabulate:
            featvis(command)
        results[run.table].append((run.label, collect(root, run)))
    text = tables(results)
    print(text)
    (root / "tables.md").write_text(text)
    return results


if __name__ == "__main__":
    main()
