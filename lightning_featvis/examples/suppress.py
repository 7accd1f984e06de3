"""A new objective in a few lines: find the image that turns a unit *off*."""

import torch

from lightning_featvis.objectives import NeuronObjective


class SuppressObjective(NeuronObjective):
    """Minimise the selected activations instead of maximising them."""

    def loss(self, selected: torch.Tensor, target) -> torch.Tensor:
        # selected: [B, N] activations of the target's unit (a lightning_featvis.Target)
        return self.scale * selected.mean(dim=1)
