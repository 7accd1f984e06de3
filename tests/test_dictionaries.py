"""Dictionaries after a layer: an overcomplete SAE (or any [N, D] -> [N, K] module) becomes a layer
of its own whose codes are the SAE's own, listed, addressable by units, and taken off again."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from lightning_featvis import WithDictionaries, layers, render
from lightning_featvis.digits_data import digits_split
from lightning_featvis.errors import FeatvisError
from lightning_featvis.layer_table import describe_layers
from lightning_featvis.probe import Probe
from lightning_featvis.zoo.digits import DigitsSAE, DigitsViT
from lightning_featvis.zoo.digits.sae import DIGITS_SAE_LAYER, DIGITS_SAE_READS

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


@pytest.fixture(scope="module")
def sae():
    return DigitsSAE().build().eval()


@pytest.fixture(scope="module")
def digits():
    return digits_split().val_images[:6]


def test_the_sae_layers_codes_are_the_saes_own_encoder_output(sae, digits):
    adapter = WithDictionaries(DigitsViT(), {DIGITS_SAE_LAYER: sae})
    net = adapter.build().eval()
    layers_read = [DIGITS_SAE_READS, DIGITS_SAE_LAYER, f"{DIGITS_SAE_LAYER}.pre_codes"]
    with torch.no_grad():
        acts = Probe(net, layers_read)(adapter.normalize(digits))
        tokens = acts[DIGITS_SAE_READS]  # [B, 65, 64]
        pre_codes, codes = sae.encode(tokens.flatten(0, 1))
    assert acts[DIGITS_SAE_LAYER].shape == (6, 65, 256)
    torch.testing.assert_close(acts[DIGITS_SAE_LAYER], codes.view(6, 65, 256), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(acts[f"{DIGITS_SAE_LAYER}.pre_codes"], pre_codes.view(6, 65, 256), rtol=1e-5, atol=1e-5)
    assert int((acts[DIGITS_SAE_LAYER][0, 3] != 0).sum()) == 8  # top 8 of 256 per token
    # the network's own output does not change
    plain = DigitsViT()
    with torch.no_grad():
        torch.testing.assert_close(net(adapter.normalize(digits)), plain.build().eval()(plain.normalize(digits)))
    adapter.release(net)


def test_the_sae_is_listed_as_layers_of_its_own_and_its_insides_are_not(sae):
    infos = {info.name: info for info in layers(DigitsViT(), dictionaries={DIGITS_SAE_LAYER: sae})}
    assert infos[DIGITS_SAE_LAYER].shape == (1, 65, 256)
    assert infos[DIGITS_SAE_LAYER].layout.startswith("tokens (1 class token")
    assert f"{DIGITS_SAE_LAYER}.pre_codes" in infos
    assert not any(name.startswith(f"{DIGITS_SAE_LAYER}.dictionary") for name in infos)
    assert DIGITS_SAE_LAYER not in {info.name for info in describe_layers(DigitsViT())}


def test_sae_latents_render_as_units_and_rise(sae):
    # all patches: from the grey start some token has latent 86 in its top 8, so its code has a gradient
    targets = [f"{DIGITS_SAE_LAYER}.pre_codes:neuron=86", f"{DIGITS_SAE_LAYER}:neuron=86"]
    short = render(DigitsViT(), targets, steps=1, loss_form="mean", dictionaries={DIGITS_SAE_LAYER: sae}, **QUIET)
    long = render(DigitsViT(), targets, steps=30, loss_form="mean", dictionaries={DIGITS_SAE_LAYER: sae}, **QUIET)
    assert (long.activations > short.activations + 0.5).all(), (short.activations, long.activations)


def test_a_sweep_over_latents_is_sized_by_the_dictionary(sae):
    from lightning_featvis import NeuronObjective

    objective = NeuronObjective(WithDictionaries(DigitsViT(), {DIGITS_SAE_LAYER: sae}))
    assert objective.unit_sizes(DIGITS_SAE_LAYER) == {"neurons": 256, "patches": 64}


def test_any_module_from_d_to_k_is_a_dictionary_and_a_users_module_comes_back_clean():
    net = torchvision.models.resnet18(num_classes=5)
    keys = set(net.state_dict())
    transcoder = nn.Linear(64, 7)  # layer1's 64 channels -> 7 codes per position
    rendering = render(net, ["layer1.codes:neuron=2"], steps=2, image_size=32, loss_form="mean",
                       dictionaries={"layer1.codes": transcoder}, **QUIET)
    assert rendering.images.shape == (1, 3, 32, 32) and torch.isfinite(rendering.images).all()
    assert set(net.state_dict()) == keys and "codes" not in dict(net.layer1.named_children())
    assert not net.layer1._forward_hooks


def test_codes_equal_a_plain_modules_output_on_map_layouts():
    net = torchvision.models.resnet18(num_classes=5).eval()
    linear = nn.Linear(64, 7)
    from lightning_featvis import AnyModule

    adapter = WithDictionaries(AnyModule(net, image_size=32), {"layer1.codes": linear})
    built = adapter.build()
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        acts = Probe(built, ["layer1", "layer1.codes"])(image)
    tokens = acts["layer1"].flatten(2).transpose(1, 2)  # [B, H*W, C]
    torch.testing.assert_close(acts["layer1.codes"], linear(tokens), rtol=1e-5, atol=1e-5)
    assert adapter.layout("layer1.codes").kind == "tokens" and adapter.layout("layer1.codes").prefix_tokens == 0
    adapter.release(built)


def test_bad_dictionaries_are_named():
    with pytest.raises(FeatvisError, match="name it after the layer it reads"):
        WithDictionaries(DigitsViT(), {"sae": nn.Linear(64, 8)})
    with pytest.raises(FeatvisError, match="unknown layer"):
        WithDictionaries(DigitsViT(), {"encoder.no_such_layer.sae": nn.Linear(64, 8)}).build()
    squash = nn.Sequential(nn.Linear(64, 8), nn.Flatten(0))  # gives [N * 8]: not codes per token
    with pytest.raises(FeatvisError, match=r"maps \[N, D\] tokens to \[N, K\] codes"):
        render(DigitsViT(), [f"{DIGITS_SAE_LAYER}:neuron=0"], steps=1, dictionaries={DIGITS_SAE_LAYER: squash}, **QUIET)
    with pytest.raises(FeatvisError, match="SAE checkpoint not found"):
        DigitsSAE(checkpoint="/no/such/sae.pt").build()


def test_featvis_layers_lists_the_shipped_sae_from_its_config(capsys):
    from pathlib import Path

    from lightning_featvis.cli import main

    config = Path(__file__).parents[1] / "configs" / "objectives" / "digits_sae_latents.yaml"
    main(["layers", "--config", str(config)])
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows[DIGITS_SAE_LAYER] == "DictionaryLayer [1, 65, 256] tokens (1 class token)"
    assert rows[f"{DIGITS_SAE_LAYER}.pre_codes"] == "Identity [1, 65, 256] tokens (1 class token)"
