"""Input reconstruction: find an image whose layer output matches a target photo's."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import nn
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from lightning_featvis.callbacks.reconstruction_report import MeasuresFidelity
from lightning_featvis.images import load_photo
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.base import VisualizationObjective
from lightning_featvis.params import ImageParam
from lightning_featvis.schedule import Octave
from lightning_featvis.seeding import derive_seed, run_seed
from lightning_featvis.targets import Target

Distance = Literal["l1", "l2", "cos"]


def output_distance(selected: torch.Tensor, wanted: torch.Tensor, distance: Distance) -> torch.Tensor:
    """Distance per row ``[B]`` between selected outputs ``[B, N]`` and the wanted ones ``[1, N]``:
    ``l1`` mean absolute difference, ``l2`` mean squared difference, ``cos`` ``1 - cos``."""
    wanted = wanted.expand_as(selected)
    if distance == "l1":
        return (selected - wanted).abs().mean(dim=1)
    if distance == "l2":
        return (selected - wanted).square().mean(dim=1)
    return 1 - F.cosine_similarity(selected, wanted, dim=1)


class ReconstructionObjective(VisualizationObjective, MeasuresFidelity):
    """Gradient descent on ``a_g`` so that a layer's output ``O_l(a_g)`` matches ``O_l(a)`` of a
    target photo ``a``.

    Targets are units as everywhere, so a target says which part of the output must match:
    ``encoder.layers.encoder_layer_3:all`` the whole block output, ``...:patch=[0-26] cls=1`` only
    its first 28 tokens (class token and patches 0-26), as in the seeds' first-28-patches test.

    Args:
        target_image: the photo to reconstruct: an image file or a photo bundled with
            scikit-learn (``china.jpg``, ``flower.jpg``); centre-cropped and resized to the
            model's input size.
        distance: ``l1`` (mean absolute difference, the seeds), ``l2`` (mean squared difference)
            or ``cos`` (``1 - cos`` of the selected outputs, the seeds' cosine variant).
        remove_layernorm: replace every ``nn.LayerNorm`` of the network by the identity
            (the seed texts' experiment 13: mixers reconstruct badly because of LayerNorm).
        layer: default layer for targets that name none.
        criterion_noise: standard deviation of the noise ``a' = a + N(0, criterion_noise)`` of
            the seeds' accuracy criterion (see :meth:`fidelity`; the seeds use 1/18).
    """

    def __init__(
        self,
        network: ModelAdapter,
        target_image: str | None = None,
        distance: Distance = "l1",
        remove_layernorm: bool = False,
        layer: str | None = None,
        criterion_noise: float = 1 / 18,
        octaves: list[Octave] | None = None,
        param: ImageParam | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(network=network, octaves=octaves, param=param, optimizer=optimizer)
        self.target_image, self.distance = target_image, distance
        self.remove_layernorm, self.layer = remove_layernorm, layer
        self.criterion_noise = criterion_noise
        self._references: dict[str, torch.Tensor] = {}

    @property
    def default_layer(self) -> str | None:
        return self.layer

    def build_network(self) -> nn.Module:
        if self.net is None:
            net = self.network.build()
            if self.remove_layernorm:
                for name, module in list(net.named_modules()):
                    if isinstance(module, nn.LayerNorm):
                        parent, _, child = name.rpartition(".")
                        setattr(net.get_submodule(parent), child, nn.Identity())
            self.net = net.eval().requires_grad_(False)
        return self.net

    def setup(self, stage: str) -> None:
        self.photo = load_photo(self.target_image, self.network.image_size)
        super().setup(stage)

    def reference(self, layer: str) -> torch.Tensor:
        """The target photo's output of ``layer`` (computed once; no gradient)."""
        if layer not in self._references:
            with torch.no_grad():
                acts = self.activations(self.photo.to(self.device), [layer])[layer]
            self._references[layer] = acts.float()
        return self._references[layer]

    def loss(self, selected: torch.Tensor, target: Target) -> torch.Tensor:
        wanted = self.select({target.layer: self.reference(target.layer)}, target)
        return output_distance(selected, wanted, self.distance)

    def fidelity(self, views: torch.Tensor, targets: list[Target]) -> list[dict[str, float]]:
        """How well reconstructions ``views`` ``[N, C, s, s]`` (model-sized, in [0, 1]) match the
        target photo, one dict per target:

        - ``psnr`` (dB) and ``ssim`` of the image against the photo (torchmetrics, range 1);
        - ``distance``: the objective's distance between ``O(a_g)`` and ``O(a)`` over the
          target's unit; ``noise_distance``: the same for ``a' = a + N(0, criterion_noise)``
          (noise seeded by the run seed and the target);
        - ``accurate``: the seeds' criterion ``distance < noise_distance``.
        """
        photo = self.photo.to(views.device)
        rows = []
        with torch.no_grad():
            for view, target in zip(views, targets):
                gen = torch.Generator().manual_seed(derive_seed(run_seed(), "criterion", target.key))
                noisy = photo + torch.randn(photo.shape, generator=gen).to(photo.device) * self.criterion_noise
                pair = torch.cat([view.unsqueeze(0).to(photo.dtype), noisy])
                acts = self.activations(pair, [target.layer])
                distance, noise_distance = self.loss(self.select(acts, target).float(), target).tolist()
                rows.append(
                    dict(
                        psnr=float(peak_signal_noise_ratio(view.unsqueeze(0), photo, data_range=1.0)),
                        ssim=float(structural_similarity_index_measure(view.unsqueeze(0), photo, data_range=1.0)),
                        distance=distance,
                        noise_distance=noise_distance,
                        accurate=distance < noise_distance,
                    )
                )
        return rows
