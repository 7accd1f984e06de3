"""Objective algebra: a target may be a weighted sum of units across layers; its loss, and so its
gradient, is the weighted sum of its terms'."""

from __future__ import annotations

import pytest
import torch
import yaml

from lightning_featvis import NeuronObjective, render
from lightning_featvis.cli import main
from lightning_featvis.errors import FeatvisError
from lightning_featvis.targets import Target, parse_targets
from lightning_featvis.zoo.digits import DigitsViT

L1, L3 = "encoder.layers.encoder_layer_1", "encoder.layers.encoder_layer_3"
SUM = f"0.5 * {L1}:neuron=3 - {L3}:neuron=7"
QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def test_a_sum_parses_into_weighted_terms_in_both_forms():
    (target,) = parse_targets([SUM])
    assert [(t.weight, t.layer, t.unit.neurons) for t in target.terms] == [(0.5, L1, (3,)), (-1.0, L3, (7,))]
    (listed,) = parse_targets([[[0.5, f"{L1}:neuron=3"], [-1, f"{L3}:neuron=7"]]])
    assert listed == target and target.key == f"sum(0.5*{L1}:neuron3 + -1*{L3}:neuron7)"
    with pytest.raises(FeatvisError, match="a term of a sum names one unit"):
        parse_targets([f"0.5 * {L1}:neuron=0-3 + {L3}:neuron=1"])


def gradient(objective: NeuronObjective, target: Target, view: torch.Tensor) -> torch.Tensor:
    view = view.clone().requires_grad_(True)
    objective.targets = (target,)
    loss, _ = objective.target_losses(view)
    (grad,) = torch.autograd.grad(loss.sum(), view)
    return grad


@pytest.mark.parametrize("loss_form", ["mean", "l1"])
def test_a_sums_gradient_is_the_weighted_sum_of_its_terms_gradients(loss_form):
    objective = NeuronObjective(DigitsViT(), loss_form=loss_form)
    objective.build_network()
    torch.manual_seed(0)
    view = torch.rand(1, 3, 32, 32)
    (total,) = parse_targets([SUM])
    (a,) = parse_targets([f"{L1}:neuron=3"])
    (b,) = parse_targets([f"{L3}:neuron=7"])
    expected = 0.5 * gradient(objective, a, view) - gradient(objective, b, view)
    got = gradient(objective, total, view)
    assert float(expected.abs().max()) > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_a_sum_renders_from_python_and_from_yaml(tmp_path):
    rendering = render(DigitsViT(), [SUM, f"{L3}:neuron=7"], steps=8, loss_form="mean",
                       default_root_dir=str(tmp_path / "py"), **QUIET)
    assert rendering.images.shape[0] == 2 and rendering.targets[0].terms
    config = {
        "model": {"class_path": "lightning_featvis.NeuronObjective",
                  "init_args": {"network": {"class_path": "lightning_featvis.zoo.digits.DigitsViT"},
                                "loss_form": "mean", "octaves": [{"steps": 2}]}},
        "data": {"class_path": "lightning_featvis.TargetDataModule",
                 "init_args": {"targets": [[[0.5, f"{L1}:neuron=3"], [-1.0, f"{L3}:neuron=7"]]]}},
        "trainer": {"enable_progress_bar": False, "default_root_dir": str(tmp_path / "cli")},
    }
    path = tmp_path / "sum.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    (png,) = (tmp_path / "cli").rglob("sum__*.png")
    assert png.name == f"sum__0.5x{L1}.neuron3__-1x{L3}.neuron7.png"
    manifest = next((tmp_path / "cli").rglob("manifest.csv")).read_text()
    assert f"0.5*{L1}:neuron3 + -1*{L3}:neuron7" in manifest


def test_a_term_out_of_range_is_named(tmp_path):
    with pytest.raises(FeatvisError, match="neuron 99 is out of range"):
        render(DigitsViT(), [f"0.5 * {L1}:neuron=99 - {L3}:neuron=7"], steps=1, default_root_dir=str(tmp_path), **QUIET)


def test_unit_values_add_and_scale_into_the_same_target_as_the_string():
    from lightning_featvis import unit

    value = 0.5 * unit(f"{L1}:neuron=3") - unit(f"{L3}:neuron=7")
    assert value.spec == [[0.5, f"{L1}:neuron=3"], [-1.0, f"{L3}:neuron=7"]]
    assert parse_targets([value.spec]) == parse_targets([SUM])
    assert (unit(f"{L1}:neuron=3") / 4 + -unit(f"{L3}:neuron=7")).spec == [[0.25, f"{L1}:neuron=3"], [-1.0, f"{L3}:neuron=7"]]
    assert unit(f"{L3}:neuron=7").spec == f"{L3}:neuron=7"
    with pytest.raises(FeatvisError, match="names 4 units"):
        unit(f"{L1}:neuron=0-3")
    with pytest.raises(TypeError):
        unit(f"{L1}:neuron=3") + 1


def test_render_takes_unit_values_and_renders_what_the_string_renders(tmp_path):
    from lightning_featvis import unit

    value = 0.5 * unit(f"{L1}:neuron=3") - unit(f"{L3}:neuron=7")
    by_value = render(DigitsViT(), value, steps=4, loss_form="mean", **QUIET)
    by_string = render(DigitsViT(), [SUM], steps=4, loss_form="mean", **QUIET)
    assert by_value.targets == by_string.targets
    torch.testing.assert_close(by_value.images, by_string.images, rtol=0, atol=1e-6)
