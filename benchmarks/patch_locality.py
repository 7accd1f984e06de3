"""Patch locality: does a single-patch unit depend on its own patch's pixels only?

The seeds say a ViT's patch stays local (one neuron in one patch changes that patch's input
region) while a mixer's spreads over the whole image. This measures it on the project's own
digits models (ViT, feed-forward mixer, GPT-2-style causal stack; 32 px, 8x8 patches of 4 px)
for the unit "all neurons of patch p" at every block's output:

- **gradient share**: the share of |d unit / d image| that falls inside patch p's own 4x4
  pixels, on held-out digits (mean over images and over patches 9, 27, 36, 54);
- **change share**: the share of |final - initial| image change inside that window after
  optimising the unit from N(0.7, 1/20) noise (no blur, no jitter, which would spread it).

A uniform spread puts 1/64 = 1.6% in any one patch. Run from the repository root:

    python benchmarks/patch_locality.py            # about a minute on 2 CPU cores
    python benchmarks/patch_locality.py --quick    # seconds: first and last block only
"""

from __future__ import annotations

import argparse
import logging
import tempfile

import lightning as L
import torch

from lightning_featvis import NeuronObjective, Octave, TargetDataModule
from lightning_featvis.callbacks import GroupResultHook
from lightning_featvis.digits_data import digits_split
from lightning_featvis.probe import Probe
from lightning_featvis.units import Unit, select
from lightning_featvis.zoo.digits import DigitsMixer, DigitsViT
from lightning_featvis.zoo.digits.models import DigitsGPT2

PATCHES = (9, 27, 36, 54)
GRID, PATCH = 8, 4  # 8x8 patches of 4 px on the 32 px digits models
#: model name -> (adapter, block layer name for block i, number of blocks)
MODELS = {
    "ViT": (DigitsViT, "encoder.layers.encoder_layer_{}", 4),
    "mixer": (DigitsMixer, "blocks.{}", 4),
    "GPT-2 stack": (DigitsGPT2, "blocks.{}", 4),
}


def window(patch: int) -> tuple[slice, slice]:
    """The pixel rows and columns of ``patch`` (row-major on the 8x8 grid)."""
    row, col = divmod(patch, GRID)
    return slice(row * PATCH, (row + 1) * PATCH), slice(col * PATCH, (col + 1) * PATCH)


def inside_share(magnitude: torch.Tensor, patch: int) -> float:
    """Share of a non-negative ``[B, C, H, W]`` map's mass inside ``patch``'s window."""
    rows, cols = window(patch)
    return float(magnitude[..., rows, cols].sum() / magnitude.sum().clamp(min=1e-12))


def gradient_share(adapter, net, layer: str, images: torch.Tensor) -> float:
    """Mean share of the input gradient of "all neurons of patch p" inside patch p."""
    shares = []
    for patch in PATCHES:
        x = images.clone().requires_grad_(True)
        acts = Probe(net, [layer])(adapter.normalize(x))[layer]
        select(acts, adapter.layout(layer), Unit(patches=(patch,))).sum().backward()
        shares.append(inside_share(x.grad.abs(), patch))
    return sum(shares) / len(shares)


class InitialCanvas(L.Callback):
    """Keeps the canvases as they were before the first optimizer step."""

    def on_before_backward(self, trainer, pl_module, loss):
        if trainer.global_step == 0:
            self.canvas = pl_module.param().detach().clone()


class FinalCanvas(GroupResultHook):
    def on_target_group_end(self, trainer, pl_module, result):
        self.result = result


def change_share(adapter, layer: str, steps: int, root: str) -> float:
    """Mean share of the image change inside patch p after optimising "all neurons of patch p"."""
    first, last = InitialCanvas(), FinalCanvas()
    objective = NeuronObjective(adapter, reduction="mean", octaves=[Octave(steps=steps, lr=(0.5, 0.5))])
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=root, callbacks=[first, last],
    )
    targets = [f"{layer}:patch={p}" for p in PATCHES]
    trainer.fit(objective, datamodule=TargetDataModule(targets, group_size=len(targets)))
    # the result's images are clamped to [0, 1]; compare like with like
    change = (last.result.images - first.canvas.clamp(0, 1)).abs()
    return sum(inside_share(change[i : i + 1], p) for i, p in enumerate(PATCHES)) / len(PATCHES)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first and last block only, fewer steps")
    parser.add_argument("--steps", type=int, default=60, help="optimisation steps for the change share")
    parser.add_argument("--images", type=int, default=32, help="held-out digits for the gradient share")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    L.seed_everything(0, verbose=False)
    images = digits_split().val_images[: args.images]
    steps = 10 if args.quick else args.steps
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for model, (make, template, blocks) in MODELS.items():
            adapter = make()
            net = adapter.build().eval().requires_grad_(False)
            for block in (0, blocks - 1) if args.quick else range(blocks):
                layer = template.format(block)
                rows.append(dict(
                    model=model, block=block + 1, layer=layer,
                    gradient=gradient_share(adapter, net, layer, images),
                    change=change_share(adapter, layer, steps, root),
                ))
    print(f"\nshare inside the unit's own patch (uniform: {1 / GRID**2:.1%}); patches {PATCHES}, "
          f"{len(images)} held-out digits, {steps} steps\n")
    print("| model | block | layer | gradient share | change share |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['block']} | `{r['layer']}` | {r['gradient']:.1%} | {r['change']:.1%} |")
    return rows


if __name__ == "__main__":
    main()
