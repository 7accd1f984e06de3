"""Visualization quality of every recipe in lightning_featvis/recipes/, judged as docs/quality.md says.

For each recipe and each of ``--seeds`` seeds, ``featvis fit`` renders class images of the
ten digits with the embedded digits ViT (each run is exactly the command printed before it).
The PNGs it wrote (the model-sized centre of each canvas, 8-bit, as a user would get them) are
then judged:

- **self top-1**: the visualized model (``DigitsViT``) classifies the image as its class;
- **transfer top-1**: independently trained judges do: a second digits ViT trained from
  another seed (``DigitsViT(checkpoint=DIGITS_VIT_SEED1_CHECKPOINT)``) and a small CNN
  (``DigitsCNN``); reported per judge and as their mean;
- **logit reached**: the class logit of the image divided by the highest logit of that class
  over all 1797 real digits (above 1 is expected);
- **neuron reached** (docs/quality.md, "Activation reached"): the recipe also renders neurons
  0-9 of the last block MLP (``encoder.layers.encoder_layer_3.mlp.1``, each in all patches) from
  seed 0; each image's mean activation of its neuron over the patches, divided by the highest
  that mean reaches on a real digit, averaged over the ten neurons;
- **seed consistency**: mean cosine similarity, over classes and seed pairs, of the model's own
  features of two seeds' images (the final class-token representation, ``encoder.ln`` token 0)
  and of their pixels (centred by their mean);
- **s/image**: wall time of the renders divided by the images they produced.

Run (from the repository root; about 5-10 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/quality.py                 # every recipe, 3 seeds
    .venv/bin/python benchmarks/quality.py --recipes badger best --seeds 1
    .venv/bin/python benchmarks/quality.py --quick         # 1 step per octave: checks it runs

Images, CSVs and TensorBoard logs go under ``--root`` (default ``benchmark_logs/quality``); the
table is printed and written to ``quality.md`` there.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from lightning_featvis.cli import main as featvis
from lightning_featvis.images import load_photo
from lightning_featvis.recipes import recipe_path
from lightning_featvis.units import parse_units, select

RECIPES_DIR = recipe_path("best").parent  # the recipes ship inside the package
RECIPES = ("badger", "lucent", "ghiasi", "maco", "best")
CLASS_TARGETS = '["heads.head:class=0-9"]'
FEATURE_LAYER = "encoder.ln"
NEURON_LAYER = "encoder.layers.encoder_layer_3.mlp.1"
NEURON_UNITS = "neuron=0-9"


def recipe_config(recipe: str, recipes_dir: Path, root: Path, quick: bool) -> Path:
    """The recipe's YAML; with ``quick``, a copy whose octaves take 1 step each."""
    path = recipes_dir / f"{recipe}.yaml"
    if not quick:
        return path
    config = yaml.safe_load(path.read_text())
    for octave in config["model"]["init_args"].get("octaves") or []:
        octave["steps"] = 1
    quick_path = root / f"{recipe}_quick.yaml"
    quick_path.parent.mkdir(parents=True, exist_ok=True)
    quick_path.write_text(yaml.safe_dump(config))
    return quick_path


def render(recipe: str, recipes_dir: Path, seed: int, root: Path, quick: bool,
           targets: str = CLASS_TARGETS, kind: str = "classes") -> tuple[Path, float]:
    """Run one recipe for one seed on ``targets``; return its images folder and the wall time."""
    run_root = root / recipe / kind / f"seed{seed}"
    command = ["fit", "--config", str(recipe_config(recipe, recipes_dir, root, quick)), "--seed_everything", str(seed),
               "--data.init_args.targets", targets, "--data.init_args.group_size", "10",
               "--trainer.default_root_dir", str(run_root), "--trainer.enable_progress_bar", "false",
               "--trainer.enable_model_summary", "false"]
    print("featvis " + " ".join(f"'{a}'" if "[" in a else a for a in command), flush=True)
    start = time.perf_counter()
    featvis(command)
    seconds = time.perf_counter() - start
    versions = sorted((run_root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1] / "images", seconds


def read_class_images(folder: Path, size: int = 32, units: list[str] | None = None) -> torch.Tensor:
    """The images of ``units`` (default: the ten classes) ``[N, 3, size, size]`` (model-sized
    centre of each PNG), in that order, from ``manifest.csv``."""
    with (folder / "manifest.csv").open() as f:
        files = {row["unit"]: row["file"] for row in csv.DictReader(f)}
    images = []
    for unit in units or [f"class{c}" for c in range(10)]:
        image = load_photo(str(folder / files[unit]))[0]  # square PNG: read as is
        top = (image.shape[-1] - size) // 2
        images.append(image[:, top : top + size, top : top + size])
    return torch.stack(images)


class Judges:
    """The visualized model, its independent judges and the real data's logit maxima."""

    def __init__(self) -> None:
        from lightning_featvis.digits_data import load_digits_tensors
        from lightning_featvis.probe import Probe
        from lightning_featvis.zoo.digits import DigitsCNN, DigitsViT
        from lightning_featvis.zoo.digits.models import DIGITS_VIT_SEED1_CHECKPOINT

        self.model = DigitsViT()
        self.net = self.model.build().eval()
        self.judges = {
            "ViT seed 1": self._built(DigitsViT(checkpoint=str(DIGITS_VIT_SEED1_CHECKPOINT))),
            "CNN": self._built(DigitsCNN()),
        }
        self.features = Probe(self.net, [FEATURE_LAYER])
        self.neuron_probe = Probe(self.net, [NEURON_LAYER])
        self.neuron_units = parse_units(NEURON_UNITS)
        images, _ = load_digits_tensors()
        with torch.no_grad():
            self.real_max = self.net(self.model.normalize(images)).max(dim=0).values  # [10]
            self.real_neuron_max = self.neuron_means(images).max(dim=0).values  # [10]

    def neuron_means(self, images: torch.Tensor) -> torch.Tensor:
        """Each of :attr:`neuron_units`' mean activation over the patches, for every image:
        ``[B, 3, 32, 32]`` -> ``[B, units]`` (the neuron objective's quantity)."""
        acts = self.neuron_probe(self.model.normalize(images))[NEURON_LAYER]
        layout = self.model.layout(NEURON_LAYER)
        return torch.stack([select(acts, layout, unit).mean(dim=1) for unit in self.neuron_units], dim=1)

    @torch.no_grad()
    def neuron_reached(self, images: torch.Tensor) -> float:
        """Mean over units of unit i's activation in image i ``[units, 3, 32, 32]`` divided by
        its highest on a real digit."""
        means = self.neuron_means(images).diagonal()
        return (means / self.real_neuron_max).mean().item()

    @staticmethod
    def _built(adapter):
        net = adapter.build().eval()
        return lambda x: net(adapter.normalize(x))

    @torch.no_grad()
    def score(self, per_seed: list[torch.Tensor]) -> dict[str, float]:
        classes = torch.arange(10)
        images = torch.cat(per_seed)  # [S * 10, 3, 32, 32]
        labels = classes.repeat(len(per_seed))
        logits = self.net(self.model.normalize(images))
        row = {"self top-1": (logits.argmax(1) == labels).float().mean().item()}
        transfer = []
        for name, judge in self.judges.items():
            row[f"transfer {name}"] = (judge(images).argmax(1) == labels).float().mean().item()
            transfer.append(row[f"transfer {name}"])
        row["transfer top-1"] = float(np.mean(transfer))
        row["logit reached"] = (logits[torch.arange(len(labels)), labels] / self.real_max[labels]).mean().item()
        feats = [self.features(self.model.normalize(x))[FEATURE_LAYER][:, 0] for x in per_seed]
        pixels = [(x - x.mean(dim=(1, 2, 3), keepdim=True)).flatten(1) for x in per_seed]
        pairs = list(itertools.combinations(range(len(per_seed)), 2))
        cos = torch.nn.functional.cosine_similarity
        row["feature cos"] = float(np.mean([cos(feats[a], feats[b]).mean().item() for a, b in pairs])) if pairs else float("nan")
        row["pixel cos"] = float(np.mean([cos(pixels[a], pixels[b]).mean().item() for a, b in pairs])) if pairs else float("nan")
        return row


COLUMNS = ("self top-1", "transfer top-1", "transfer ViT seed 1", "transfer CNN", "logit reached",
           "neuron reached", "feature cos", "pixel cos", "s/image")


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| recipe | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for recipe, row in rows.items():
        lines.append(f"| {recipe} | " + " | ".join(f"{row[c]:.2f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES),
                        help=f"names of YAML files in --recipes-dir (default: {' '.join(RECIPES)})")
    parser.add_argument("--recipes-dir", default=str(RECIPES_DIR))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--root", default="benchmark_logs/quality")
    parser.add_argument("--quick", action="store_true", help="1 step per octave: checks that everything runs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    recipes_dir = Path(args.recipes_dir)
    missing = [r for r in args.recipes if not (recipes_dir / f"{r}.yaml").is_file()]
    if missing:
        parser.error(f"no recipe {', '.join(missing)} in {recipes_dir}; found: "
                     f"{', '.join(sorted(p.stem for p in recipes_dir.glob('*.yaml')))}")
    torch.set_num_threads(args.threads)
    root = Path(args.root)
    judges = Judges()
    rows: dict[str, dict[str, float]] = {}
    for recipe in args.recipes:
        per_seed, seconds = [], 0.0
        for seed in range(args.seeds):
            folder, elapsed = render(recipe, recipes_dir, seed, root, args.quick)
            seconds += elapsed
            per_seed.append(read_class_images(folder))
        folder, elapsed = render(recipe, recipes_dir, 0, root, args.quick,
                                 f'["{NEURON_LAYER}:{NEURON_UNITS}"]', "neurons")
        units = [unit.name for unit in judges.neuron_units]
        rows[recipe] = {**judges.score(per_seed), "neuron reached": judges.neuron_reached(read_class_images(folder, units=units)),
                        "s/image": seconds / (10 * len(per_seed))}
    text = table(rows)
    print(text)
    root.mkdir(parents=True, exist_ok=True)
    (root / "quality.md").write_text(text + "\n")
    return rows


if __name__ == "__main__":
    main()
