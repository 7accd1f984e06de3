"""Interpolations: ``interpolate(A, B, n)`` is n frames (1 - t) A + t B in one group whose canvases
share a low-resolution part (:class:`SharedImage`), so neighbouring frames stay alike."""

from __future__ import annotations

import pytest
import torch

from lightning_featvis import TargetDataModule, interpolate, render, unit
from lightning_featvis.errors import FeatvisError
from lightning_featvis.params import GrayscaleImage, PixelImage, SharedImage
from lightning_featvis.targets import parse_targets
from lightning_featvis.zoo.digits import DigitsViT

L1, L3 = "encoder.layers.encoder_layer_1", "encoder.layers.encoder_layer_3"
SPEC = f"interpolate({L1}:neuron=3, {L3}:neuron=[0,1], 5)"
QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def test_an_interpolation_is_n_frames_of_weighted_sums_in_one_set():
    frames = parse_targets([SPEC])
    assert [[term.weight for term in f.terms] for f in frames] == [[1, 0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0, 1]]
    assert {f.terms[1].unit.neurons for f in frames} == {(0, 1)}  # the bracket's comma stays in its unit
    assert len({f.key for f in frames}) == 5 and len({f.shared_set for f in frames}) == 1
    assert interpolate(unit(f"{L1}:neuron=3"), f"{L3}:neuron=[0,1]", 5) == SPEC
    for bad in (f"interpolate({L1}:neuron=3, 5)", f"interpolate({L1}:neuron=3, {L3}:neuron=1, 1)",
                f"interpolate({L1}:neuron=0-3, {L3}:neuron=1, 3)"):
        with pytest.raises(FeatvisError, match="interpolate|one unit"):
            parse_targets([bad])


def test_frames_are_never_split_across_groups():
    data = TargetDataModule([f"{L3}:neuron=1", SPEC, f"{L3}:neuron=2"], group_size=3)

    class Request:
        default_layer, unit_sizes = L3, None

    targets = data.parse(Request())
    size = data.group_size_for(targets)
    assert size == 5  # at least the interpolation's 5 frames
    groups = data.make_groups(targets, size)
    assert [sum(t is not None for t in g.targets) for g in groups] == [1, 5, 1]
    assert data.make_groups(parse_targets(["neuron=0-6"]), 3)[-1].targets[1:] == (None, None)  # plain runs as before


def test_shared_canvases_add_one_part_per_set_and_its_gradient_comes_from_every_frame():
    for inner in (PixelImage(), GrayscaleImage()):
        param = SharedImage(inner)
        param.view_size = 32
        param.allocate(4, 32)
        param.reset_([1, 2, 3, None], 32)
        own = inner().detach()
        param.share_([0, 0, None, None])
        with torch.no_grad():
            for part in param.shared:
                part.fill_(0.1)
        image = param()
        torch.testing.assert_close(image[:2], own[:2] + 0.3)  # three shared scales, 0.1 each
        torch.testing.assert_close(image[2:], own[2:])
        image[1].sum().backward()  # frame 1 alone moves its set's shared part
        assert float(param.shared[0].grad[0].abs().sum()) > 0 and float(param.shared[0].grad[1:].abs().sum()) == 0
        if isinstance(inner, GrayscaleImage):
            assert param.shared[0].shape[1] == 1 and torch.equal(image[0, 0], image[0, 2])


def test_an_interpolations_neighbouring_frames_stay_closer_than_unshared_renders():
    options = dict(recipe="best", steps=60, **QUIET)
    shared = render(DigitsViT(), [f"interpolate({L3}:neuron=3, {L3}:neuron=7, 5)"], **options)
    sums = [f"{1 - t} * {L3}:neuron=3 + {t} * {L3}:neuron=7" for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    alone = render(DigitsViT(), sums, **options)
    def neighbours(images):
        return float((images[1:] - images[:-1]).abs().mean())
    assert neighbours(shared.images) < 0.7 * neighbours(alone.images)
