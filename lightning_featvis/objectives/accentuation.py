"""Feature accentuation (Hamblin et al. 2024, "Feature Accentuation: Revealing 'What' Features
Respond to in Natural Images"): drive a unit starting from a photo while the canvas's features
at a chosen layer stay close to the photo's, and keep the attribution map (where the
optimisation had to change the photo) beside the image."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable

from lightning_featvis.callbacks.attribution import (
    AttributionMap,
    ExposesCanvasGradient,
)
from lightning_featvis.directions import DirectionForm
from lightning_featvis.errors import FeatvisError
from lightning_featvis.images import load_photo
from lightning_featvis.models.adapter import ModelAdapter
from lightning_featvis.objectives.neuron import NeuronObjective
from lightning_featvis.params import FourierImage, ImageParam
from lightning_featvis.probe import find_layer
from lightning_featvis.results import GroupResult
from lightning_featvis.schedule import Octave
from lightning_featvis.targets import Target
from lightning_featvis.units import as_tokens

Closeness = Literal["l2", "cos"]


def feature_distance(features: torch.Tensor, reference: torch.Tensor, distance: Closeness) -> torch.Tensor:
    """Distance per row ``[G]`` between features ``[G, F]`` and the photo's ``[G, F]``: ``l2``
    the relative squared distance ``||f - r||^2 / ||r||^2`` (scale-free, so one ``closeness``
    weight suits layers of any magnitude; 1 when the features are zero), ``cos`` ``1 - cos(f, r)``."""
    if distance == "l2":
        return (features - reference).square().sum(dim=1) / reference.square().sum(dim=1).clamp(min=1e-12)
    return 1 - F.cosine_similarity(features, reference, dim=1)


class AccentuationObjective(NeuronObjective, ExposesCanvasGradient):
    """Feature accentuation: raise a unit (any unit :class:`NeuronObjective` takes: ``class=3``,
    ``neuron=5``, ``neuron=5 patch=12``, ``direction=sae[3]``...) in a photo, while a closeness
    penalty keeps the canvas's features at ``feature_layer`` near the photo's, so the result shows
    *what in this photo* the unit responds to instead of a new image.

    Every canvas starts as the photo (centre-cropped and resized to the canvas), written into
    ``param`` through its ``update_``: exact for pixel, decorrelated and Fourier
    parameterizations (up to the sigmoid's logit clamp at pure black or white), the grey mean for
    :class:`~lightning_featvis.params.GrayscaleImage`, only a phase projection for
    :class:`~lightning_featvis.params.MacoImage`. The default is Hamblin's: a
    :class:`~lightning_featvis.params.FourierImage` (1/f-scaled spectrum, decorrelated colour,
    sigmoid), which spreads each step over the whole photo rather than single pixels.

    Each target's loss is its unit's loss (``loss_form``) plus ``closeness * distance(f(view),
    f(photo view))`` at ``feature_layer`` (the whole layer output, all tokens, compared on the
    model-sized view, unaugmented; the photo's view is cut where the canvas's is) plus
    ``stay_near * mean((canvas - photo)^2)`` over the canvas (Horama's pixel-space penalty).

    The objective adds an :class:`~lightning_featvis.callbacks.AttributionMap` (unless the
    Trainer has one, or ``attribution`` is false): the accumulated ``|d loss / d canvas|`` of every
    step, written as ``<layer>__<unit>__attribution.png`` beside each image.

    Args:
        photo: an image file, ``china.jpg`` / ``flower.jpg`` (bundled with scikit-learn) or
            ``digits:<i>``; ``None`` gives ``china.jpg``.
        feature_layer: the layer whose output must stay close to the photo's; ``None``: each
            target's own layer (a sum of units: the mean over its terms' layers). An earlier
            layer constrains the image more locally (edges, textures), a later one lets it move
            further while it keeps its meaning.
        closeness: weight of the feature-space penalty (0: off, plain deep dream from the photo
            in ``param``).
        distance: ``l2`` (relative squared distance, see :func:`feature_distance`) or ``cos``
            (``1 - cos`` of the flattened features).
        stay_near: weight of a pixel-space penalty ``mean((canvas - photo)^2)`` (0: off).
        attribution: add an :class:`~lightning_featvis.callbacks.AttributionMap` when the
            Trainer has none.
        param: the input parameterization, started from the photo (default:
            ``FourierImage(decay_power=1.5)``, Horama's decay). A ``PhotoImage`` must name the
            same photo: it re-reads its own when an octave grows the canvas.

    Everything else is :class:`NeuronObjective` (``loss_form``, default ``mean`` here: raise the
    unit's mean; ``constant``, ``reduction``, ``scale``, ``log_softmax_logits``, ``directions``, ``direction_form``, ``cossim_pow``). Without
    ``octaves``: 100 steps at the model's input size.
    """

    def __init__(
        self,
        network: ModelAdapter,
        photo: str | None = None,
        feature_layer: str | None = None,
        closeness: float = 1.0,
        distance: Closeness = "l2",
        stay_near: float = 0.0,
        attribution: bool = True,
        layer: str | None = None,
        loss_form: Literal["l1", "mean"] = "mean",
        constant: float = 200.0,
        reduction: Literal["sum", "mean"] = "mean",
        scale: float = 1.0,
        log_softmax_logits: bool = False,
        directions: dict[str, str] | None = None,
        direction_form: DirectionForm = "dot",
        cossim_pow: float = 1.0,
        octaves: list[Octave] | None = None,
        param: ImageParam | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__(
            network=network,
            layer=layer,
            loss_form=loss_form,
            constant=constant,
            reduction=reduction,
            scale=scale,
            log_softmax_logits=log_softmax_logits,
            directions=directions,
            direction_form=direction_form,
            cossim_pow=cossim_pow,
            octaves=octaves,
            param=param if param is not None else FourierImage(decay_power=1.5),
            optimizer=optimizer,
        )
        self.photo, self.feature_layer, self.closeness = photo, feature_layer, closeness
        self.distance, self.stay_near, self.attribution = distance, stay_near, attribution
        self.step_canvas: torch.Tensor | None = None
        self._photos: dict[int, torch.Tensor] = {}
        self._reference: tuple[tuple, dict[str, torch.Tensor]] | None = None  # the photo's features, last key

    # --- checks ----------------------------------------------------------------------------

    def prepare(self) -> None:
        for name, value in (("closeness", self.closeness), ("stay_near", self.stay_near)):
            if not value >= 0:
                raise FeatvisError(f"AccentuationObjective {name} must be >= 0 (0: off), got {value}")
        if self.distance not in ("l2", "cos"):
            raise FeatvisError(f"AccentuationObjective distance must be 'l2' or 'cos', got {self.distance!r}")
        load_photo(self.photo)  # an unreadable photo fails before the first step
        super().prepare()

    def check_targets(self, targets: tuple[Target, ...]) -> None:
        super().check_targets(targets)
        if self.feature_layer is not None:
            find_layer(self.net, self.feature_layer)  # names the closest layers when misspelt

    # --- the photo ---------------------------------------------------------------------------

    def photo_canvas(self, size: int) -> torch.Tensor:
        """The photo at canvas side ``size``, ``[1, C, size, size]`` on this module's device
        (read once per size)."""
        if size not in self._photos:
            self._photos[size] = load_photo(self.photo, size)
        return self._photos[size].to(self.device)

    def reset_inputs(self, seeds: list[int | None]) -> None:
        super().reset_inputs(seeds)  # the storage at the first octave's size, then the photo in it
        start = self.photo_canvas(self.param.size)
        self.param.update_(lambda images: start.to(images).expand_as(images).clone())

    def compared_layers(self, target: Target) -> list[str]:
        """The layers whose features must stay near the photo's for ``target``."""
        if self.feature_layer is not None:
            return [self.feature_layer]
        return sorted({part.layer for part in target.parts})

    def photo_features(self, count: int, layers: list[str]) -> dict[str, torch.Tensor]:
        """The photo's features ``{layer: [count, F]}`` (float32, no gradient) on views cut
        where the canvases' views are now."""
        offsets = self.param.view_offsets() if len(self.param.view_position) == count else None
        key = (self.param.size, count, tuple(offsets or ()), tuple(layers))
        if self._reference is None or self._reference[0] != key:
            # without jitter the key never changes: the photo goes through the network once
            photo = self.photo_canvas(self.param.size).expand(count, -1, -1, -1)
            views = self.param.crop(photo, offsets) if offsets is not None else self.param.views(photo, centred=True)
            with torch.no_grad():
                acts = self.activations(views, layers)
            self._reference = key, {layer: self.features(acts, layer) for layer in layers}
        return self._reference[1]

    def features(self, acts: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
        """``layer``'s whole output as one vector per image ``[B, F]`` (float32)."""
        return as_tokens(acts[layer], self.network.layout(layer)).flatten(1).float()

    def closeness_distance(self, views: torch.Tensor, targets: tuple[Target | None, ...]) -> torch.Tensor:
        """Per target ``[G]``: the distance between the features of ``views`` ``[G, C, s, s]``
        (model-sized, cut where the canvases' views are) and the photo's at the target's
        compared layers (mean over them); 0 for padding slots (``None``)."""
        compared = [self.compared_layers(t) if t is not None else [] for t in targets]
        layers = sorted({layer for mine in compared for layer in mine})
        if not layers:
            return views.new_zeros(views.shape[0])
        acts = self.activations(views, layers)
        reference = self.photo_features(views.shape[0], layers)
        distances = {layer: feature_distance(self.features(acts, layer), reference[layer], self.distance)
                     for layer in layers}
        zero = views.new_zeros((), dtype=torch.float32)
        return torch.stack([sum((distances[layer][i] for layer in mine), zero) / max(len(mine), 1)
                            for i, mine in enumerate(compared)])

    # --- the hooks of the base -----------------------------------------------------------

    def regularization(self, view: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if image.requires_grad:
            # a training step (the final measurement runs without gradients): this is the only
            # hook that sees the step's canvas, so keep it for the AttributionMap callback
            image.retain_grad()
            self.step_canvas = image
        penalty = super().regularization(view, image)
        if self.closeness:
            penalty = penalty + self.closeness * self.closeness_distance(view, self.targets)
        if self.stay_near:
            photo = self.photo_canvas(image.shape[-1])
            penalty = penalty + self.stay_near * (image - photo).square().flatten(1).mean(dim=1)
        return penalty

    def finish_group(self, group: int) -> GroupResult:
        # the result is measured on centred views, so the photo's views must be cut there too
        self.param.centre_views(len(self.targets))
        return super().finish_group(group)

    def configure_callbacks(self) -> list[L.Callback]:
        callbacks = super().configure_callbacks()
        if self.attribution and not any(isinstance(cb, AttributionMap) for cb in self.trainer.callbacks):
            callbacks.append(AttributionMap())
        return callbacks
