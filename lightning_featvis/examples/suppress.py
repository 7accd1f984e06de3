"""A new objective in a few lines: find the image that turns a unit *off*."""

import torch

from lightning_featvis.objectives import NeuronObjective


class SuppressObjective(NeuronObjective):
    """Minimise the selected activations instead of maximising them."""

    def loss(self, selected: torch.Tensor) -> torch.Tensor:
        # selected: [B, N] activations of the target's unit; the loss is minimised
        return self.scale * selected.mean(dim=1)
