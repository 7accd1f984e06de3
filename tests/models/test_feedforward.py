"""Melas-Kyriazi's feed-forward ViT: reference key names, token-MLP layouts, renders, digits mixer."""

from __future__ import annotations

import argparse

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import render

from lightning_featvis import NeuronObjective, Octave
from lightning_featvis.errors import FeatvisError
from lightning_featvis.layer_table import describe_layers
from lightning_featvis.models.feedforward import FeedForwardMixer
from lightning_featvis.probe import Probe
from lightning_featvis.units import parse_units, select

#: 16 px, 4x4 patches of 4 px: 16 patches + the class token = 17 tokens, width 16, 2 blocks
TINY = dict(size=None, image_size=16, patch_size=4, embed_dim=16, depth=2, mlp_ratio=2.0, num_classes=5)


def reference_keys(depth: int) -> list[str]:
    """The state-dict keys of ``vision_transformer_linear.LinearVisionTransformer``."""
    keys = ["cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "pos_encoding.pos_embed", "pos_encoding.cls_pos_embed"]
    for i in range(depth):
        for module in ("mlp1.fc1", "mlp1.fc2", "norm1", "mlp2.fc1", "mlp2.fc2", "norm2"):
            keys += [f"blocks.{i}.{module}.weight", f"blocks.{i}.{module}.bias"]
    return keys + ["norm.weight", "norm.bias", "head.weight", "head.bias"]


@pytest.fixture
def tiny_mixer(tmp_path_factory) -> FeedForwardMixer:
    """A tiny mixer with fixed random weights in a released-style (DeiT) checkpoint file."""
    torch.manual_seed(0)
    net = FeedForwardMixer(**TINY).build()
    # PyTorch's default init instead of the reference's std 0.02: activations of order 1
    for module in net.modules():
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()
    path = tmp_path_factory.mktemp("ff") / "linear-tiny-checkpoint.pth"
    torch.save({"model": net.state_dict(), "args": argparse.Namespace(model="linear_tiny"), "epoch": 299}, path)
    return FeedForwardMixer(**TINY, checkpoint=str(path))


def manual_forward(net, x: torch.Tensor) -> torch.Tensor:
    """The reference forward written out with functional ops on the state dict."""
    sd = net.state_dict()
    eps = 1e-6
    tokens = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=4).flatten(2).transpose(1, 2)
    tokens = torch.cat([sd["cls_token"].expand(len(x), -1, -1), tokens], dim=1)
    pos = torch.cat([sd["pos_encoding.cls_pos_embed"], sd["pos_encoding.pos_embed"].flatten(2).transpose(1, 2)], dim=1)
    h = tokens + pos

    def mlp(z, prefix):
        z = F.gelu(F.linear(z, sd[f"{prefix}.fc1.weight"], sd[f"{prefix}.fc1.bias"]))
        return F.linear(z, sd[f"{prefix}.fc2.weight"], sd[f"{prefix}.fc2.bias"])

    for i in range(TINY["depth"]):
        b = f"blocks.{i}"
        h = h + mlp(F.layer_norm(h, (16,), sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"], eps), f"{b}.mlp1")
        t = h.transpose(1, 2)  # [B, D, 17]: the token MLP sees the class token too
        t = t + mlp(F.layer_norm(t, (17,), sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"], eps), f"{b}.mlp2")
        h = t.transpose(1, 2)
    h = F.layer_norm(h, (16,), sd["norm.weight"], sd["norm.bias"], eps)
    return F.linear(h[:, 0], sd["head.weight"], sd["head.bias"])


def test_released_key_layout_round_trips_through_a_checkpoint(tiny_mixer):
    net = tiny_mixer.build().eval()
    state = net.state_dict()
    assert list(state) == reference_keys(TINY["depth"])
    assert state["pos_encoding.pos_embed"].shape == (1, 16, 4, 4)
    assert state["pos_encoding.cls_pos_embed"].shape == (1, 1, 16)
    assert state["blocks.0.mlp2.fc1.weight"].shape == (34, 17) and state["blocks.0.norm2.weight"].shape == (17,)
    torch.manual_seed(1)
    fresh = FeedForwardMixer(**TINY).build().eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), net(x))
        again = FeedForwardMixer(**TINY, checkpoint=tiny_mixer.checkpoint).build().eval()
        torch.testing.assert_close(again(x), net(x))
        assert torch.allclose(net(x), manual_forward(net, x), atol=1e-5)


def test_released_sizes_match_the_published_parameter_counts():
    assert FeedForwardMixer(size="tiny").name == "ff_tiny"
    counts = {size: sum(p.numel() for p in FeedForwardMixer(size=size).build().parameters()) for size in ("tiny", "base")}
    assert round(counts["tiny"] / 1e6, 1) == 7.7 and round(counts["base"] / 1e6) == 62
    with pytest.raises(FeatvisError, match="unknown feed-forward ViT size"):
        FeedForwardMixer(size="large")
    with pytest.raises(FeatvisError, match="no known layout"):
        FeedForwardMixer(**TINY).layout("blocks.0.attn")


def test_mismatched_checkpoint_is_one_message(tiny_mixer):
    with pytest.raises(FeatvisError, match="does not match"):
        FeedForwardMixer(**{**TINY, "embed_dim": 8}, checkpoint=tiny_mixer.checkpoint).build()


def test_token_mlp_layout_indexes_the_transposed_tensor(tiny_mixer):
    net = tiny_mixer.build().eval()
    layers = ["blocks.0.mlp2", "blocks.0.norm2", "blocks.1", "blocks.0.mlp1", "blocks.0.mlp2.fc1", "patch_embed.proj"]
    with torch.no_grad():
        acts = Probe(net, layers, stop=False)(torch.rand(2, 3, 16, 16))
    assert acts["blocks.0.mlp2"].shape == (2, 16, 17) and acts["blocks.1"].shape == (2, 17, 16)
    for layer in ("blocks.0.mlp2", "blocks.0.norm2"):
        layout = tiny_mixer.layout(layer)
        assert (layout.kind, layout.prefix_tokens) == ("tokens_transposed", 1)
        for d, p in [(0, 0), (5, 7), (15, 15)]:
            (unit,) = parse_units(f"neuron={d} patch={p}")
            assert torch.equal(select(acts[layer], layout, unit), acts[layer][:, d, 1 + p : 2 + p])
        (cls,) = parse_units("neuron=3 patch=cls")
        assert torch.equal(select(acts[layer], layout, cls), acts[layer][:, 3, 0:1])
        (all_patches,) = parse_units("neuron=4")
        assert torch.equal(select(acts[layer], layout, all_patches), acts[layer][:, 4, 1:])
    for layer in ("blocks.1", "blocks.0.mlp1"):
        (unit,) = parse_units("neuron=5 patch=7")
        assert torch.equal(select(acts[layer], tiny_mixer.layout(layer), unit), acts[layer][:, 8, 5:6])
    # the token MLP's hidden units mix all tokens: no class token among them
    hidden = tiny_mixer.layout("blocks.0.mlp2.fc1")
    assert (hidden.kind, hidden.prefix_tokens) == ("tokens_transposed", 0) and acts["blocks.0.mlp2.fc1"].shape == (2, 16, 34)
    (unit,) = parse_units("neuron=2 patch=3")
    assert torch.equal(select(acts["blocks.0.mlp2.fc1"], hidden, unit), acts["blocks.0.mlp2.fc1"][:, 2, 3:4])
    # patch embedding: map, patches row-major
    (unit,) = parse_units("neuron=1 patch=6")
    assert torch.equal(select(acts["patch_embed.proj"], tiny_mixer.layout("patch_embed.proj"), unit),
                       acts["patch_embed.proj"][:, 1, 1, 2:3])


def test_every_module_has_a_declared_layout(tiny_mixer):
    infos = {info.name: info for info in describe_layers(tiny_mixer)}
    assert infos["blocks.0.mlp2"].layout == "tokens_transposed (1 class token)"
    assert infos["blocks.0.mlp2.fc1"].layout == "tokens_transposed"
    assert infos["blocks.0.post_mlp1"].layout == "tokens (1 class token)"
    assert infos["patch_embed.proj"].layout == "map" and infos["head"].layout == "logits"


class FirstActivation(L.Callback):
    """The logged mean activation of the first step: the initial canvas's."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self.value = float(trainer.callback_metrics["activation"])


@pytest.mark.parametrize("layer, rise", [("blocks.1", 1.0), ("blocks.0.mlp2", 0.2)])
def test_render_raises_neurons_of_block_and_token_mlp(tiny_mixer, tmp_path, layer, rise):
    # the MLP outputs follow a LayerNorm, so their reachable range is small in a random net
    first = FirstActivation()
    objective = NeuronObjective(tiny_mixer, layer=layer, octaves=[Octave(steps=30, lr=(0.05, 0.02))])
    got = render(objective, ["neuron=3", "neuron=5 patch=6"], tmp_path, callbacks=[first]).activations()
    assert set(got) == {f"{layer}:neuron3", f"{layer}:neuron5_patch6"}
    assert min(got.values()) > first.value + rise
