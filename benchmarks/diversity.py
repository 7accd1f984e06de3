"""Diversity: k images of one unit, pushed apart by Lucid's Gram-cosine penalty, on the digits models.

For each digits model, 4 units of one layer, ``images_per_target: 4``, the ``best`` recipe, and
diversity weights w = 0 (independent images, seeded apart) and larger w. Measured on the final
images (no augmentation), at the layer the penalty reads (the unit's own):

- **feature cosine**: the mean pairwise cosine similarity of the 4 images' layer outputs
  (flattened), averaged over the units: how alike the images are, as the model sees them;
- **Gram cosine**: the same for their Gram matrices (what the penalty lowers);
- **activation kept**: each image's activation over that of the same image (the same seed)
  with w = 0; the table gives the mean and the worst of the 16 images.

The penalty's weight falls from w to 0 over the first half of the steps (the default
``diversity_until: 0.5``); ``--until none`` keeps it at w throughout, as Lucid does.

Run from the repository root (about 2 minutes on 2 CPU cores; ``--quick``: seconds):

    python benchmarks/diversity.py
"""

from __future__ import annotations

import argparse
import logging

import torch

from lightning_featvis import render
from lightning_featvis.diversity import mean_pairwise_cosine, normalised_grams
from lightning_featvis.probe import Probe
from lightning_featvis.zoo.digits import DigitsCNN, DigitsMixer, DigitsViT

#: model name -> (adapter, layer whose neurons are rendered)
MODELS = {
    "ViT": (DigitsViT, "encoder.layers.encoder_layer_3"),
    "mixer": (DigitsMixer, "blocks.3"),
    "CNN": (DigitsCNN, "features.10"),
}
UNITS, IMAGES = 4, 4


def measure(adapter, layer: str, images: torch.Tensor) -> tuple[float, float]:
    """Mean pairwise feature and Gram cosine of each unit's images (``images`` ``[U * k, C, S, S]``,
    unit-major), averaged over the units."""
    net = adapter.build().eval()
    with torch.no_grad():
        acts = Probe(net, [layer])(adapter.normalize(images))[layer]
    features, grams = [], []
    for u in range(UNITS):
        rows = acts[u * IMAGES:(u + 1) * IMAGES]
        features.append(mean_pairwise_cosine(rows))
        grams.append(mean_pairwise_cosine(normalised_grams(rows, adapter.layout(layer), IMAGES)))
    return sum(features) / UNITS, sum(grams) / UNITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one model, 20 steps")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    parser.add_argument("--until", default="0.5", help="diversity_until: a share of the steps, or none")
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    models = dict(list(MODELS.items())[:1]) if args.quick else MODELS
    steps = 20 if args.quick else 150
    until = None if args.until.lower() == "none" else float(args.until)
    print(f"{UNITS} units x {IMAGES} images each, recipe best, {steps} steps, diversity_until {until}\n")
    print("| model | layer | diversity w | feature cosine | Gram cosine | activation kept (mean) | (worst image) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, (make, layer) in models.items():
        baseline = None
        for weight in args.weights:
            result = render(make(), [f"{layer}:neuron=0-{UNITS - 1}"], recipe="best", steps=steps,
                            images_per_target=IMAGES, diversity=weight, diversity_until=until, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, ImageWriter=None)
            activation = result.activations.view(UNITS, IMAGES)
            if baseline is None:
                baseline = activation
            kept = activation / baseline
            feature, gram = measure(make(), layer, result.images)
            print(f"| {name} | `{layer}` | {weight:g} | {feature:.3f} | {gram:.3f} | {float(kept.mean()):.2f} | "
                  f"{float(kept.min()):.2f} |", flush=True)


if __name__ == "__main__":
    main()
