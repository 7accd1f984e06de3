"""Sparse-autoencoder latents of the digits ViT, rendered two ways, beside the digits that drive them.

The shipped TopK SAE (``lightning_featvis.zoo.digits.DigitsSAE``: 256 latents, 8 active per
token, trained with overcomplete on block 3's tokens) is attached after block 3. For the 16
latents active on most held-out digits, each is rendered

- **as a code**: the unit ``encoder.layers.encoder_layer_3.sae:neuron=j`` (the SAE's code j,
  in all patches);
- **as a decoder direction**: ``encoder.layers.encoder_layer_3:direction=sae[j]``, block 3's
  tokens projected on the SAE's dictionary row j (no SAE in the forward pass at all);

with the ``best`` recipe, 150 steps. Measured: the code j each render reaches (mean over
patches), over the largest the held-out digits give. The figure (``--figure``) shows, per
latent, the code render, the direction render and the three held-out digits with the largest
code j. Run from the repository root (about 1 minute on 2 CPU cores):

    python benchmarks/sae_latents.py --figure docs/sae_latents.png
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from lightning_featvis import render
from lightning_featvis.digits_data import digits_split
from lightning_featvis.zoo.digits import DigitsSAE, DigitsViT
from lightning_featvis.zoo.digits.sae import (
    DIGITS_SAE_LAYER,
    DIGITS_SAE_READS,
    block3_tokens,
)

LATENTS, STEPS, TOP = 16, 150, 3


def patch_codes(sae, images: torch.Tensor) -> torch.Tensor:
    """Each image's codes averaged over its 64 patches (class token left out), ``[N, K]``."""
    tokens = block3_tokens(images)
    with torch.no_grad():
        _, codes = sae.encode(tokens)
    return codes.view(len(images), 65, -1)[:, 1:].mean(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figure", help="write the figure here (PNG)")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    sae = DigitsSAE().build().eval()
    digits = digits_split().val_images
    data_codes = patch_codes(sae, digits)  # [N, K]
    latents = torch.argsort((data_codes > 0).float().mean(dim=0), descending=True)[:LATENTS].tolist()
    quiet = dict(recipe="best", steps=args.steps, logger=False, enable_progress_bar=False, enable_model_summary=False)
    as_codes = render(DigitsViT(), [f"{DIGITS_SAE_LAYER}:neuron={j}" for j in latents],
                      dictionaries={DIGITS_SAE_LAYER: sae}, **quiet)
    as_directions = render(DigitsViT(), [f"{DIGITS_SAE_READS}:direction=sae[{j}]" for j in latents],
                           directions={"sae": sae.get_dictionary().detach()}, **quiet)
    reached = {name: patch_codes(sae, r.images)[torch.arange(LATENTS), latents]
               for name, r in (("code", as_codes), ("direction", as_directions))}
    best = data_codes[:, latents].max(dim=0)
    print(f"digits ViT block 3, TopK SAE (256 latents, k = 8); {LATENTS} latents active on most held-out digits; "
          f"recipe best, {args.steps} steps\n")
    print("| latent | active on (share of digits) | code: best digit | code: render as code | code: render as direction |")
    print("|---:|---:|---:|---:|---:|")
    share = (data_codes > 0).float().mean(dim=0)
    for i, j in enumerate(latents):
        print(f"| {j} | {float(share[j]):.2f} | {float(best.values[i]):.2f} | {float(reached['code'][i]):.2f} | "
              f"{float(reached['direction'][i]):.2f} |")
    ratio = {name: float((value / best.values).median()) for name, value in reached.items()}
    print(f"\nmedian over the {LATENTS} latents of code reached / best digit's: as code {ratio['code']:.2f}, "
          f"as direction {ratio['direction']:.2f}")
    if args.figure:
        tiles = []
        for i, j in enumerate(latents):
            top = torch.argsort(data_codes[:, j], descending=True)[:TOP]
            tiles += [as_codes.images[i], as_directions.images[i], *digits[top]]
        grid = make_grid(torch.stack(tiles), nrow=2 * (2 + TOP), padding=2, pad_value=1.0)
        save_image(F.interpolate(grid[None], scale_factor=2, mode="nearest")[0], args.figure)
        print(f"figure: {args.figure} (per latent: render as code, as direction, then the {TOP} digits with the "
              "largest code; two latents per row, in the table's order)")


if __name__ == "__main__":
    main()
