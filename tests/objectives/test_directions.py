"""Direction units: named sets of vectors addressed as direction=NAME[ROW], from YAML files and
from tensors, projected by dot, cosine or Lucid's cossim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import render as fit

from lightning_featvis import NeuronObjective, Octave, render
from lightning_featvis.errors import FeatvisError
from lightning_featvis.probe import Probe
from lightning_featvis.units import parse_units
from lightning_featvis.zoo.digits import DigitsViT

L3 = "encoder.layers.encoder_layer_3"
QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def mean_token(image: torch.Tensor) -> torch.Tensor:
    """The digits ViT's block-4 patch tokens for ``image`` ``[3, S, S]``, averaged: ``[D]``."""
    adapter = DigitsViT()
    net = adapter.build().eval()
    with torch.no_grad():
        acts = Probe(net, [L3])(adapter.normalize(image[None]))[L3]
    return acts[0, 1:].mean(dim=0)


def test_direction_units_parse_rows_ranges_and_sweeps():
    (unit,) = parse_units("direction=sae[3] patch=5")
    assert unit.direction == ("sae", 3) and unit.patches == (5,) and unit.name == "sae3_patch5"
    assert [u.direction for u in parse_units("direction=sae[0-2]")] == [("sae", 0), ("sae", 1), ("sae", 2)]
    swept = parse_units("direction=sae[*]", {"directions": {"sae": 4}})
    assert [u.direction[1] for u in swept] == [0, 1, 2, 3]
    with pytest.raises(FeatvisError, match="cannot be combined with neuron="):
        parse_units("direction=sae[1] neuron=3")
    with pytest.raises(FeatvisError, match="direction=NAME\\[ROW\\]"):
        parse_units("direction=sae")


def test_a_direction_objective_turns_the_activation_towards_its_direction(tmp_path):
    torch.manual_seed(1)
    directions = torch.randn(3, 64)
    path = tmp_path / "probe.npy"
    np.save(path, directions.numpy())
    objective = NeuronObjective(DigitsViT(), loss_form="mean", directions={"probe": str(path)},
                                octaves=[Octave(steps=40)], optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    got = fit(objective, [f"{L3}:direction=probe[0-1]"], tmp_path, callbacks=[])
    images = got.images()
    start = mean_token(torch.full((3, 32, 32), 0.7))
    for row in (0, 1):
        v = directions[row]
        final = mean_token(images[f"{L3}:probe{row}"])
        cos = lambda x: float(torch.nn.functional.cosine_similarity(x, v, dim=0))  # noqa: E731
        # the activation turned towards v (its cosine rose), so more than its norm grew
        assert cos(final) > cos(start) + 0.2 and cos(final) > 0.3
        assert float(final @ v) > float(start @ v) + 1.0
    # the other row's image is not what drives this row most
    assert cos(mean_token(images[f"{L3}:probe1"])) > cos(mean_token(images[f"{L3}:probe0"]))


@pytest.mark.parametrize("form", ["dot", "cosine", "cossim"])
def test_each_projection_form_is_its_formula(form):
    from lightning_featvis.directions import DirectionSets

    torch.manual_seed(0)
    v, x = torch.randn(2, 8), torch.randn(2, 5, 8)
    projected = DirectionSets({"d": v}, form, cossim_pow=2.0).project(x, "d", 1)
    dot = x @ v[1]
    cos = dot / (x.norm(dim=-1) * v[1].norm())
    expected = {"dot": dot, "cosine": cos, "cossim": dot / v[1].norm() * cos.clamp(min=0.1) ** 2}[form]
    torch.testing.assert_close(projected, expected)


def test_render_takes_tensors_and_sweeps_a_set(tmp_path):
    torch.manual_seed(0)
    rendering = render(DigitsViT(), [f"{L3}:direction=probe[1]", f"{L3}:direction=probe[*] patch=3"],
                       directions={"probe": torch.randn(4, 64)}, direction_form="cossim", steps=3,
                       default_root_dir=str(tmp_path), **QUIET)
    assert [t.key for t in rendering.targets] == [f"{L3}:probe1"] + [f"{L3}:probe{i}_patch3" for i in range(4)]


def test_a_direction_of_the_wrong_width_names_both_widths(tmp_path):
    with pytest.raises(FeatvisError, match="width 63, but layer 'encoder.layers.encoder_layer_3' has width 64"):
        render(DigitsViT(), [f"{L3}:direction=probe[0]"], directions={"probe": torch.randn(2, 63)}, steps=1,
               default_root_dir=str(tmp_path), **QUIET)
    with pytest.raises(FeatvisError, match="unknown direction set 'prob'"):
        render(DigitsViT(), [f"{L3}:direction=prob[0]"], directions={"probe": torch.randn(2, 64)}, steps=1,
               default_root_dir=str(tmp_path), **QUIET)
    with pytest.raises(FeatvisError, match="direction probe\\[5\\] is out of range: set 'probe' has rows 0-1"):
        render(DigitsViT(), [f"{L3}:direction=probe[5]"], directions={"probe": torch.randn(2, 64)}, steps=1,
               default_root_dir=str(tmp_path), **QUIET)
    with pytest.raises(FeatvisError, match="file not found"):
        render(DigitsViT(), [f"{L3}:direction=probe[0]"], directions={"probe": str(tmp_path / "none.pt")}, steps=1,
               default_root_dir=str(tmp_path), **QUIET)
