"""Several images of one target: repeats and ``images_per_target`` give copies seeded apart, kept
in one group, and ``diversity`` (Lucid's Gram-cosine penalty) pushes them apart."""

from __future__ import annotations

import pytest
import torch

from lightning_featvis import TargetDataModule, render
from lightning_featvis.diversity import (
    Diversity,
    mean_pairwise_cosine,
    normalised_grams,
)
from lightning_featvis.errors import FeatvisError
from lightning_featvis.models import Layout
from lightning_featvis.probe import Probe
from lightning_featvis.targets import parse_targets
from lightning_featvis.zoo.digits import DigitsViT

L3 = "encoder.layers.encoder_layer_3"
TOKENS = Layout("tokens", prefix_tokens=1)
QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def test_a_target_listed_again_is_its_next_image_with_its_own_key():
    targets = parse_targets(["neuron=1", "neuron=0-2"])
    assert [t.key for t in targets] == [":neuron1", ":neuron0", ":neuron1#1", ":neuron2"]
    again = targets[2]
    assert again.copy == 1 and again.identity == targets[0].key
    assert again.file_stem == "output__neuron1__copy1" and targets[0].file_stem == "output__neuron1"


def test_images_per_target_numbers_copies_and_never_splits_them_across_groups():
    data = TargetDataModule([f"{L3}:neuron=3", f"{L3}:neuron=4", f"{L3}:neuron=3"], group_size=4, images_per_target=3)

    class Request:  # what the objective tells the data module, reduced to what parse reads
        default_layer, unit_sizes = L3, None

    targets = data.parse(Request())
    assert [t.copy for t in targets] == [0, 1, 2, 0, 1, 2, 3, 4, 5]
    assert len({t.key for t in targets}) == 9 and len({t.identity for t in targets}) == 2
    size = data.group_size_for(targets)
    assert size == 3  # 4 would split a target's 3 images
    for group in data.make_groups(targets, size):
        assert len({t.identity for t in group.targets if t is not None}) == 1
    assert TargetDataModule(images_per_target=3, group_size=1).group_size_for(targets[:3]) == 3
    with pytest.raises(FeatvisError, match="images_per_target"):
        TargetDataModule(images_per_target=0).parse(Request())


def test_the_penalty_is_the_summed_gram_cosine_with_the_other_images_of_the_same_target():
    a, b = parse_targets([f"{L3}:neuron=1", f"{L3}:neuron=2"])
    a1 = parse_targets([f"{L3}:neuron=1"] * 2)[1]
    acts = {L3: torch.randn(1, 5, 3).expand(4, 5, 3).clone()}  # four identical images: cosine 1
    penalty = Diversity(weight=2.0).penalty(acts, {L3: TOKENS}, (a, a1, b, None))
    # a and a1: w * (one other image at cosine 1) / (2 images); b alone and padding: 0
    torch.testing.assert_close(penalty, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert Diversity(weight=2.0).layers((a, b, None)) == set()  # nothing to compare
    assert Diversity(weight=0.0).layers((a, a1)) == set()
    with pytest.raises(FeatvisError, match="diversity must be a weight >= 0"):
        Diversity(weight=-1.0)


def test_grams_average_an_ensembles_views_per_target():
    acts = torch.randn(6, 5, 3)  # 2 targets x 3 views
    grams = normalised_grams(acts, TOKENS, 2)
    tokens = acts[:3]
    expected = (tokens.transpose(1, 2) @ tokens).mean(0).flatten()
    torch.testing.assert_close(grams[0], expected / expected.norm(), rtol=1e-5, atol=1e-6)


def gram_cosine(images: torch.Tensor) -> float:
    adapter = DigitsViT()
    with torch.no_grad():
        acts = Probe(adapter.build().eval(), [L3])(adapter.normalize(images))[L3]
    return mean_pairwise_cosine(normalised_grams(acts, adapter.layout(L3), len(images)))


def test_diversity_lowers_the_images_similarity_and_keeps_their_activation():
    runs = {w: render(DigitsViT(), [f"{L3}:neuron=3"], images_per_target=3, diversity=w, steps=40, loss_form="mean",
                      **QUIET) for w in (0.0, 2.0)}
    independent, diverse = runs[0.0], runs[2.0]
    assert diverse.images.shape[0] == 3 and [t.copy for t in diverse.targets] == [0, 1, 2]
    assert gram_cosine(diverse.images) < gram_cosine(independent.images) - 0.05
    # the first image is seeded as the lone target's: w = 0 renders exactly the independent run
    alone = render(DigitsViT(), [f"{L3}:neuron=3"], steps=40, loss_form="mean", **QUIET)
    torch.testing.assert_close(alone.images[0], independent.images[0], rtol=0, atol=1e-6)
    assert float(diverse.activations.min()) > 0.5 * float(independent.activations.mean())


def test_an_unknown_diversity_layer_is_named_before_the_first_step():
    with pytest.raises(FeatvisError, match="no_such_layer"):
        render(DigitsViT(), [f"{L3}:neuron=3"], images_per_target=2, diversity=1.0, diversity_layer="no_such_layer",
               steps=1, **QUIET)
