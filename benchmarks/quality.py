"""Visualization quality of the recipes in lightning_featvis/recipes/, judged as docs/quality.md says,
on two zoos: the digits and the colour photos.

For each zoo, recipe and each of ``--seeds`` seeds, ``featvis fit`` renders class images of the
ten classes with the zoo's visualized ViT (each run is exactly the command printed before it;
the only per-zoo arguments are the network and, for ``maco``, the data whose spectrum it keeps).
The PNGs it wrote (the model-sized centre of each canvas, 8-bit, as a user would get them) are
then judged:

- **self top-1**: the visualized model classifies the image as its class;
- **transfer top-1**: independently trained judges do: a second ViT of the zoo trained from
  another seed and a small CNN; reported per judge and as their mean;
- **plausibility** (MACO, Fel et al. 2023): in each judge's feature space (the ViT's final class
  token, the CNN's pooled features), the cosine similarity between the image's features and the
  mean feature of real training images of its class; mean over judges. ``real plaus.`` is the
  same figure for real held-out images, the reference;
- **FD**: the Fréchet distance, in each judge's feature space (torchmetrics), between all the
  recipe's class images and the real held-out images; mean over judges. ``real FD`` is the
  figure for real training images against the same held-out images;
- **logit reached**: the class logit of the image divided by the highest logit of that class
  over the real images (above 1 is expected);
- **neuron reached** (activation reached): the recipe also renders neurons 0-9 of the last
  block MLP (``encoder.layers.encoder_layer_3.mlp.1``, each in all patches) from seed 0; each
  image's mean activation of its neuron over the patches, divided by the highest that mean
  reaches on a real image, averaged over the ten neurons;
- **seed consistency**: mean cosine similarity, over classes and seed pairs, of the model's own
  features of two seeds' images (``encoder.ln`` token 0) and of their pixels (centred);
- **s/image**: wall time of the renders divided by the images they produced.

Run (from the repository root; about 15 minutes a zoo on 2 CPU cores with ``--threads 2``)::

    .venv/bin/python benchmarks/quality.py                       # every recipe, both zoos, 3 seeds
    .venv/bin/python benchmarks/quality.py --zoos photos --recipes lucent auto --seeds 1
    .venv/bin/python benchmarks/quality.py --quick                # 1 step per octave: checks it runs

Images, CSVs and TensorBoard logs go under ``--root`` (default ``benchmark_logs/quality``); the
tables are printed and written to ``quality.md`` there, and a gallery per zoo (a row of real
held-out images, then a row per recipe, seed 0) to ``gallery_<zoo>.png``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from lightning_featvis.cli import main as featvis
from lightning_featvis.images import load_photo
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.probe import Probe
from lightning_featvis.recipes import recipe_path
from lightning_featvis.units import parse_units, select

RECIPES_DIR = recipe_path("best").parent  # the recipes ship inside the package
RECIPES = ("badger", "lucent", "ghiasi", "maco", "best", "auto")
CLASS_TARGETS = '["heads.head:class=0-9"]'
FEATURE_LAYER = "encoder.ln"
NEURON_LAYER = "encoder.layers.encoder_layer_3.mlp.1"
NEURON_UNITS = "neuron=0-9"
#: real training images per class that --quick judges with (it checks that everything runs)
QUICK_PER_CLASS = 20
#: the input side of the model the packaged recipes are written for (the digits ViT)
DIGITS_SIDE = 32


@dataclass(frozen=True)
class Zoo:
    """A zoo to judge recipes on: the visualized ViT (its class path, for ``featvis fit``), its
    two independent judges, the real images (training images for class means and maxima,
    held-out ones for the references) and the image source MACO's spectrum comes from."""

    name: str
    network: str
    judges: Callable[[], dict[str, ModelAdapter]]
    real: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    data: str

    def build(self) -> ModelAdapter:
        module, _, name = self.network.rpartition(".")
        import importlib

        return getattr(importlib.import_module(module), name)()


def _digits_judges() -> dict[str, ModelAdapter]:
    from lightning_featvis.zoo.digits import DigitsCNN, DigitsViT
    from lightning_featvis.zoo.digits.models import DIGITS_VIT_SEED1_CHECKPOINT

    return {"ViT seed 1": DigitsViT(checkpoint=str(DIGITS_VIT_SEED1_CHECKPOINT)), "CNN": DigitsCNN()}


def _digits_real():
    from lightning_featvis.digits_data import digits_split

    split = digits_split()
    return split.train_images, split.train_labels, split.val_images, split.val_labels


def _photos_judges() -> dict[str, ModelAdapter]:
    from lightning_featvis.zoo.photos import PhotosCNN, PhotosViT
    from lightning_featvis.zoo.photos.models import PHOTOS_VIT_SEED1_CHECKPOINT

    return {"ViT seed 1": PhotosViT(checkpoint=str(PHOTOS_VIT_SEED1_CHECKPOINT)), "CNN": PhotosCNN()}


def _photos_real():
    from lightning_featvis.photos_data import photo_split, train_crops

    train, labels = train_crops(2000, seed=0)
    split = photo_split()
    return train, labels, split.val_images, split.val_labels


ZOOS = {
    "digits": Zoo("digits", "lightning_featvis.zoo.digits.DigitsViT", _digits_judges, _digits_real, "digits:train"),
    "photos": Zoo("photos", "lightning_featvis.zoo.photos.PhotosViT", _photos_judges, _photos_real, "photos:train"),
}


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


def zoo_arguments(zoo: Zoo, config: Path) -> list[str]:
    """What a recipe needs told to run on ``zoo``: its network; the data whose spectrum a MACO
    canvas keeps (``MacoImage(magnitude=...)``); and canvas sizes of cropped octaves, which the
    recipes give in pixels for the 32 px digits ViT, scaled to the zoo's input side (``badger``'s
    48 px canvas for 32 px views is 96 px for 64 px views)."""
    args = ["--model.init_args.network", zoo.network]
    init = yaml.safe_load(config.read_text())["model"]["init_args"]
    if (init.get("param") or {}).get("class_path", "").endswith("MacoImage"):
        args += ["--model.init_args.param.init_args.magnitude", zoo.data]
    side = zoo.build().image_size
    octaves = init.get("octaves") or []
    if side != DIGITS_SIDE and any(octave.get("size") for octave in octaves):
        scaled = [{**octave, "size": octave["size"] * side // DIGITS_SIDE} if octave.get("size") else octave
                  for octave in octaves]
        args += ["--model.init_args.octaves", json.dumps(scaled)]
    return args


def render(zoo: Zoo, recipe: str, recipes_dir: Path, seed: int, root: Path, quick: bool,
           targets: str = CLASS_TARGETS, kind: str = "classes") -> tuple[Path, float]:
    """Run one recipe for one seed on ``targets``; return its images folder and the wall time."""
    run_root = root / zoo.name / recipe / kind / f"seed{seed}"
    config = recipe_config(recipe, recipes_dir, root, quick)
    command = ["fit", "--config", str(config), *zoo_arguments(zoo, config), "--seed_everything", str(seed),
               "--data.init_args.targets", targets, "--data.init_args.group_size", "10",
               "--trainer.default_root_dir", str(run_root), "--trainer.enable_progress_bar", "false",
               "--trainer.enable_model_summary", "false"]
    print("featvis " + " ".join(f"'{a}'" if "[" in a else a for a in command), flush=True)
    start = time.perf_counter()
    featvis(command)
    seconds = time.perf_counter() - start
    versions = sorted((run_root / "lightning_logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    return versions[-1] / "images", seconds


def read_class_images(folder: Path, size: int, units: list[str] | None = None) -> torch.Tensor:
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


class FeatureExtractor(nn.Module):
    """A judge's features ``[B, F]`` of images ``[B, 3, S, S]`` in [0, 1]: a ViT's final class
    token, a CNN's pooled features (``num_features`` for torchmetrics' FID)."""

    def __init__(self, adapter: ModelAdapter) -> None:
        super().__init__()
        self.adapter = adapter
        self.net = adapter.build().eval()
        self.layer = FEATURE_LAYER if "encoder.ln" in dict(self.net.named_modules()) else "pool"
        self.probe = Probe(self.net, [self.layer])
        with torch.no_grad():
            self.num_features = self(torch.zeros(1, 3, adapter.image_size, adapter.image_size)).shape[-1]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.probe(self.adapter.normalize(images.float()))[self.layer]
        return feats[:, 0] if feats.dim() == 3 else feats.flatten(1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.adapter.normalize(images))


def frechet_distance(extractor: FeatureExtractor, real: torch.Tensor, images: torch.Tensor) -> float:
    """The Fréchet distance between the features of ``images`` and of ``real`` (torchmetrics)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=extractor, normalize=True).double()
    fid.update(real, real=True)
    fid.update(images, real=False)
    return float(fid.compute())


class Judges:
    """The visualized model of a zoo, its independent judges and the real data's references."""

    def __init__(self, zoo: Zoo, per_class: int | None = None) -> None:
        """``per_class``: keep only the first that many real training images of each class (the
        class means, maxima and references then cost a fraction of the time; for ``--quick``)."""
        self.zoo = zoo
        self.model = zoo.build()
        self.size = self.model.image_size
        self.net = self.model.build().eval()
        self.judges = {name: FeatureExtractor(adapter) for name, adapter in zoo.judges().items()}
        self.features = Probe(self.net, [FEATURE_LAYER])
        self.neuron_probe = Probe(self.net, [NEURON_LAYER])
        self.neuron_units = parse_units(NEURON_UNITS)
        self.train, self.train_labels, self.val, self.val_labels = zoo.real()
        if per_class is not None:
            keep = torch.cat([(self.train_labels == c).nonzero().flatten()[:per_class] for c in range(10)])
            self.train, self.train_labels = self.train[keep], self.train_labels[keep]
        real = torch.cat([self.train, self.val])
        with torch.no_grad():
            self.real_max = self.net(self.model.normalize(real)).max(dim=0).values  # [10]
            self.real_neuron_max = self.neuron_means(real).max(dim=0).values  # [10]
            # per judge, the mean feature of each class's real training images [10, F]
            self.class_means = {
                name: torch.stack([judge(self.train[self.train_labels == c]).mean(dim=0) for c in range(10)])
                for name, judge in self.judges.items()
            }
            self.real_plausibility = self.plausibility(self.val, self.val_labels)
            self.real_fd = float(np.mean([frechet_distance(j, self.val, self.train) for j in self.judges.values()]))

    def neuron_means(self, images: torch.Tensor) -> torch.Tensor:
        """Each of :attr:`neuron_units`' mean activation over the patches, for every image:
        ``[B, 3, S, S]`` -> ``[B, units]`` (the neuron objective's quantity)."""
        acts = self.neuron_probe(self.model.normalize(images))[NEURON_LAYER]
        layout = self.model.layout(NEURON_LAYER)
        return torch.stack([select(acts, layout, unit).mean(dim=1) for unit in self.neuron_units], dim=1)

    @torch.no_grad()
    def neuron_reached(self, images: torch.Tensor) -> float:
        """Mean over units of unit i's activation in image i ``[units, 3, S, S]`` divided by
        its highest on a real image."""
        means = self.neuron_means(images).diagonal()
        return (means / self.real_neuron_max).mean().item()

    @torch.no_grad()
    def plausibility(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Mean over judges and images of the cosine between an image's features and its
        class's mean real feature."""
        cos = torch.nn.functional.cosine_similarity
        return float(np.mean([cos(judge(images), self.class_means[name][labels]).mean().item()
                              for name, judge in self.judges.items()]))

    @torch.no_grad()
    def score(self, per_seed: list[torch.Tensor]) -> dict[str, float]:
        images = torch.cat(per_seed)  # [S * 10, 3, s, s]
        labels = torch.arange(10).repeat(len(per_seed))
        logits = self.net(self.model.normalize(images))
        row = {"self top-1": (logits.argmax(1) == labels).float().mean().item()}
        for name, judge in self.judges.items():
            row[f"transfer {name}"] = (judge.logits(images).argmax(1) == labels).float().mean().item()
        row["transfer top-1"] = float(np.mean([row[f"transfer {name}"] for name in self.judges]))
        row["plausibility"] = self.plausibility(images, labels)
        row["real plaus."] = self.real_plausibility
        row["FD"] = float(np.mean([frechet_distance(judge, self.val, images) for judge in self.judges.values()]))
        row["real FD"] = self.real_fd
        row["logit reached"] = (logits[torch.arange(len(labels)), labels] / self.real_max[labels]).mean().item()
        feats = [self.features(self.model.normalize(x))[FEATURE_LAYER][:, 0] for x in per_seed]
        pixels = [(x - x.mean(dim=(1, 2, 3), keepdim=True)).flatten(1) for x in per_seed]
        pairs = list(itertools.combinations(range(len(per_seed)), 2))
        cos = torch.nn.functional.cosine_similarity
        row["feature cos"] = float(np.mean([cos(feats[a], feats[b]).mean().item() for a, b in pairs])) if pairs else float("nan")
        row["pixel cos"] = float(np.mean([cos(pixels[a], pixels[b]).mean().item() for a, b in pairs])) if pairs else float("nan")
        return row


COLUMNS = ("self top-1", "transfer top-1", "transfer ViT seed 1", "transfer CNN", "plausibility", "real plaus.",
           "FD", "real FD", "logit reached", "neuron reached", "feature cos", "pixel cos", "s/image")


def table(zoo: str, rows: dict[str, dict[str, float]]) -> str:
    lines = [f"| {zoo}: recipe | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for recipe, row in rows.items():
        lines.append(f"| {recipe} | " + " | ".join(f"{row[c]:.2f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def gallery(rows: dict[str, torch.Tensor], path: Path, scale: int) -> None:
    """One row of images ``[10, 3, s, s]`` per entry of ``rows``, enlarged ``scale`` times, as a PNG."""
    grid = torch.cat([torch.cat(list(images), dim=-1) for images in rows.values()], dim=-2)
    pixels = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels)
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoos", nargs="+", default=list(ZOOS), choices=list(ZOOS))
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
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    texts = []
    for zoo in (ZOOS[name] for name in args.zoos):
        judges = Judges(zoo, per_class=QUICK_PER_CLASS if args.quick else None)
        rows: dict[str, dict[str, float]] = {}
        first_seed = {"real (held out)": torch.stack([judges.val[judges.val_labels == c][0] for c in range(10)])}
        for recipe in args.recipes:
            per_seed, seconds = [], 0.0
            for seed in range(args.seeds):
                folder, elapsed = render(zoo, recipe, recipes_dir, seed, root, args.quick)
                seconds += elapsed
                per_seed.append(read_class_images(folder, judges.size))
            first_seed[recipe] = per_seed[0]
            folder, elapsed = render(zoo, recipe, recipes_dir, 0, root, args.quick,
                                     f'["{NEURON_LAYER}:{NEURON_UNITS}"]', "neurons")
            units = [unit.name for unit in judges.neuron_units]
            neurons = read_class_images(folder, judges.size, units=units)
            rows[recipe] = {**judges.score(per_seed), "neuron reached": judges.neuron_reached(neurons),
                            "s/image": seconds / (10 * len(per_seed))}
        gallery(first_seed, root / f"gallery_{zoo.name}.png", scale=max(1, 128 // judges.size))
        results[zoo.name] = rows
        texts.append(table(zoo.name, rows))
        print(texts[-1], flush=True)
    (root / "quality.md").write_text("\n\n".join(texts) + "\n")
    return results


if __name__ == "__main__":
    main()
