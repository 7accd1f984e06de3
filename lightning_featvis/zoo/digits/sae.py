"""The digits ViT's sparse autoencoder: an ``overcomplete`` TopK SAE (256 latents, 8 active per
token) trained on block 3's tokens over the digits training split, shipped with the package.

    from lightning_featvis import render
    from lightning_featvis.zoo.digits import DigitsViT
    from lightning_featvis.zoo.digits.sae import DIGITS_SAE_LAYER, DigitsSAE

    render(DigitsViT(), [f"{DIGITS_SAE_LAYER}.pre_codes:neuron=0-15"],
           dictionaries={DIGITS_SAE_LAYER: DigitsSAE().build()})

Retrain it (about a minute on 2 CPU cores): ``python -m lightning_featvis.zoo.digits.sae``.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_featvis.dictionaries import OvercompleteSAE, import_overcomplete_sae
from lightning_featvis.digits_data import digits_split
from lightning_featvis.probe import Probe
from lightning_featvis.zoo.digits.models import CHECKPOINTS, DigitsViT

#: the layer the SAE reads, and the layer its codes are (``.pre_codes``: before the top-k)
DIGITS_SAE_READS = "encoder.layers.encoder_layer_3"
DIGITS_SAE_LAYER = f"{DIGITS_SAE_READS}.sae"
DIGITS_SAE_CHECKPOINT = CHECKPOINTS / "digits_vit_sae.pt"
#: D (block 3's width), K latents, k active per token
DIGITS_SAE_CONFIG = dict(input_size=64, nb_concepts=256, top_k=8)


class DigitsSAE(OvercompleteSAE):
    """The shipped SAE as a dictionary (YAML: ``{class_path: lightning_featvis.zoo.digits.sae.DigitsSAE}``).

    Args:
        checkpoint: other weights of the same shape (e.g. retrained); default the shipped ones.
    """

    def __init__(self, checkpoint: str | None = None) -> None:
        config = DIGITS_SAE_CONFIG
        super().__init__(checkpoint or str(DIGITS_SAE_CHECKPOINT), config["input_size"], config["nb_concepts"],
                         kind="TopKSAE", options={"top_k": config["top_k"]})


def block3_tokens(images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Block 3's output tokens ``[N * T, D]`` (class token included) of the digits ViT for
    ``images`` ``[N, 3, 32, 32]`` in [0, 1]."""
    adapter = DigitsViT()
    net = adapter.build().eval()
    probe = Probe(net, [DIGITS_SAE_READS])
    with torch.no_grad():
        rows = [probe(adapter.normalize(images[i:i + batch]))[DIGITS_SAE_READS] for i in range(0, len(images), batch)]
    return torch.cat(rows).flatten(0, 1)


def train(epochs: int = 40, seed: int = 0, out: str = str(DIGITS_SAE_CHECKPOINT)) -> dict:
    """Train the TopK SAE on the training split's block-3 tokens with overcomplete's own loop and
    loss (MSE with its TopK auxiliary term); save its state dict to ``out``. Returns the
    validation split's explained variance (R2) and dead-latent share."""
    sae_module = import_overcomplete_sae()
    from overcomplete.sae.losses import top_k_auxiliary_loss

    torch.manual_seed(seed)
    split = digits_split()
    tokens = block3_tokens(split.train_images)
    config = DIGITS_SAE_CONFIG
    sae = sae_module.TopKSAE(config["input_size"], config["nb_concepts"], top_k=config["top_k"])
    loader = DataLoader(TensorDataset(tokens), batch_size=1024, shuffle=True)
    optimizer = torch.optim.Adam(sae.parameters(), lr=3e-3)
    sae_module.train_sae(sae, loader, top_k_auxiliary_loss, optimizer, nb_epochs=epochs, monitoring=0)
    sae.eval()
    held_out = block3_tokens(split.val_images)
    with torch.no_grad():
        _, codes, rebuilt = sae(held_out)
    r2 = 1 - float(((held_out - rebuilt) ** 2).sum() / ((held_out - held_out.mean(0)) ** 2).sum())
    dead = float(((codes > 0).sum(0) == 0).float().mean())
    torch.save(sae.state_dict(), out)
    return {"r2": r2, "dead": dead, "tokens": len(tokens)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="retrain the digits ViT's block-3 TopK SAE")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default=str(DIGITS_SAE_CHECKPOINT))
    args = parser.parse_args()
    print(train(args.epochs, out=args.out))
