"""Unit specifications and layout-aware selection."""

import pytest
import torch

from lightning_featvis import FeatvisError, parse_targets
from lightning_featvis.models import Layout
from lightning_featvis.units import Unit, check_unit, parse_units, select

TOKENS = Layout("tokens", prefix_tokens=1)


def test_ranges_expand_and_sets_stay_together():
    assert parse_units("neuron=2-4") == [Unit(neurons=(2,)), Unit(neurons=(3,)), Unit(neurons=(4,))]
    assert parse_units("neuron=[0,2-3]") == [Unit(neurons=(0, 2, 3))]
    assert parse_units("neuron=1 patch=0-1") == [Unit(neurons=(1,), patches=(0,)), Unit(neurons=(1,), patches=(1,))]
    assert parse_units("patch=7") == [Unit(patches=(7,))]
    assert parse_units("class=3") == [Unit(neurons=(3,), is_class=True)]
    assert parse_units("all") == [Unit()]
    assert parse_units("patch=cls") == [Unit(patches=(), class_token=True)]


def test_a_star_is_every_index_of_the_layer():
    sizes = {"neurons": 3, "patches": 2}
    assert parse_units("neuron=*", sizes) == [Unit(neurons=(n,)) for n in range(3)]
    assert parse_units("class=*", sizes) == [Unit(neurons=(n,), is_class=True) for n in range(3)]
    assert len(parse_units("neuron=* patch=*", sizes)) == 6
    assert parse_units("neuron=1 patch=*", sizes) == [Unit(neurons=(1,), patches=(p,)) for p in range(2)]
    with pytest.raises(FeatvisError, match=r"neuron=\* means every neuron"):
        parse_units("neuron=*")
    asked = []
    targets = parse_targets(["heads.head:class=*", "neuron=*"], lambda layer: asked.append(layer) or sizes, "blocks.0")
    assert asked == ["heads.head", "blocks.0"] and len(targets) == 6 and targets[-1].layer is None


def test_names_are_file_safe():
    assert Unit(neurons=(5,), patches=(12,)).name == "neuron5_patch12"
    assert Unit(neurons=(0, 1)).name == "neurons0+1"
    assert Unit(neurons=(3,), is_class=True).name == "class3"
    assert Unit().name == "all"


def test_targets_take_a_layer_prefix():
    targets = parse_targets(["heads.head:class=0-1", "neuron=4"])
    assert [t.layer for t in targets] == ["heads.head", "heads.head", None]
    assert targets[0].key == "heads.head:class0"


@pytest.mark.parametrize("spec", ["neuron=x", "colour=3", "neuron=5-2", "class=1 patch=2"])
def test_bad_specs_are_named(spec):
    with pytest.raises(FeatvisError, match="neuron|empty|class|unit"):
        parse_units(spec)


def test_a_repeated_target_is_rendered_again_under_its_own_key():
    keys = [t.key for t in parse_targets(["neuron=1", "neuron=0-2"])]
    assert keys == [":neuron1", ":neuron0", ":neuron1#1", ":neuron2"] and len(set(keys)) == 4


def test_select_on_tokens_excludes_the_class_token_by_default():
    acts = torch.arange(2 * 5 * 3, dtype=torch.float).view(2, 5, 3)  # [B, 1+P, D], P=4
    assert torch.equal(select(acts, TOKENS, Unit(neurons=(1,))), acts[:, 1:, 1])
    assert torch.equal(select(acts, TOKENS, Unit(neurons=(1,), class_token=True)), acts[:, :, 1])
    assert torch.equal(select(acts, TOKENS, Unit(neurons=(2,), patches=(0,))), acts[:, 1:2, 2])
    assert torch.equal(select(acts, TOKENS, Unit(patches=(3,))), acts[:, 4, :])
    assert torch.equal(select(acts, TOKENS, Unit(patches=(), class_token=True)), acts[:, 0, :])


def test_select_follows_the_declared_layout_not_the_rank():
    acts = torch.randn(2, 3, 4)  # read as [B, D, T] when the adapter says so
    transposed = select(acts, Layout("tokens_transposed"), Unit(neurons=(1,), patches=(2,)))
    assert torch.equal(transposed, acts[:, 1, 2:3])
    fmap = torch.randn(2, 6, 2, 2)  # [B, C, H, W]: patch p is position p in row-major order
    assert torch.equal(select(fmap, Layout("map"), Unit(neurons=(4,), patches=(3,))), fmap[:, 4, 1, 1:2])
    logits = torch.randn(2, 10)
    assert torch.equal(select(logits, Layout("logits"), Unit(neurons=(7,), is_class=True)), logits[:, 7:8])


def test_out_of_range_names_the_valid_range():
    with pytest.raises(FeatvisError, match="valid neurons are 0-2"):
        check_unit(Unit(neurons=(3,)), TOKENS, (1, 5, 3))
    with pytest.raises(FeatvisError, match="valid patches are 0-3"):
        check_unit(Unit(patches=(4,)), TOKENS, (1, 5, 3))
    with pytest.raises(FeatvisError, match="logits"):
        check_unit(Unit(neurons=(1,), is_class=True), TOKENS, (1, 5, 3))
    with pytest.raises(FeatvisError, match="no class token"):
        check_unit(Unit(neurons=(1,), class_token=True), Layout("tokens_transposed"), (1, 5, 3))
