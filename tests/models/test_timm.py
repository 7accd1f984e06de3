"""timm models: layouts from module names, checkpoints, renders on ViT and Mixer alike."""

import pytest
import torch
from conftest import FirstActivation, render

from lightning_featvis import FeatvisError, NeuronObjective, Octave
from lightning_featvis.layer_table import describe_layers
from lightning_featvis.models.timm_models import TimmModel

TINY_VIT = dict(name="vit_tiny_patch16_224", model_kwargs=dict(img_size=16, patch_size=4, depth=2, num_classes=5))
TINY_MIXER = dict(name="mixer_s32_224", model_kwargs=dict(img_size=64, num_classes=5))  # 2x2 patches


def test_layouts_follow_timm_names():
    vit = TimmModel(**TINY_VIT)
    shapes = {i.name: (i.shape, i.layout) for i in describe_layers(vit)}
    assert shapes["patch_embed.proj"] == ((1, 192, 4, 4), "map")
    assert shapes["patch_embed"] == ((1, 16, 192), "tokens")
    assert shapes["blocks.1"] == ((1, 17, 192), "tokens (1 class token)")
    assert shapes["head"] == ((1, 5), "logits")
    mixer = {i.name: (i.shape, i.layout) for i in describe_layers(TimmModel(**TINY_MIXER))}
    assert mixer["blocks.0.mlp_tokens"] == ((1, 512, 4), "tokens_transposed")
    assert mixer["blocks.0"] == ((1, 4, 512), "tokens")


def test_unknown_name_and_offline_hub_are_explained(monkeypatch):
    with pytest.raises(FeatvisError, match="unknown timm model"):
        TimmModel("mixer_q99")
    import timm

    def offline(*args, **kwargs):
        raise OSError("hub unreachable")

    from lightning_featvis.models import downloads

    # the hub cannot be reached: refused at once, naming the repository and the file to fetch
    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=3.0: False)
    monkeypatch.setattr(downloads, "cached", lambda repo, files: False)
    monkeypatch.setattr(timm, "create_model", offline)  # it must not even be asked
    with pytest.raises(FeatvisError, match=r"cannot download timm weights for vit_tiny_patch16_224 from the hub "
                                           r"repository 'timm/vit_tiny_patch16_224\.augreg_in21k_ft_in1k'.*"
                                           r"hf download timm/vit_tiny_patch16_224\.augreg_in21k_ft_in1k model\.safetensors"):
        TimmModel("vit_tiny_patch16_224", pretrained=True).build()
    # the hub answers, the download fails anyway: the same advice
    monkeypatch.setattr(downloads, "reachable", lambda url, timeout=3.0: True)
    with pytest.raises(FeatvisError, match=r"could not download timm weights for vit_tiny_patch16_224 \(OSError: hub "
                                           r"unreachable\).*checkpoint: DIR/model\.safetensors"):
        TimmModel("vit_tiny_patch16_224", pretrained=True).build()


def test_checkpoint_round_trip_and_render_on_a_mixer(tmp_path):
    torch.manual_seed(0)
    net = TimmModel(**TINY_MIXER).build().eval()
    path = tmp_path / "mixer.pth"
    torch.save(net.state_dict(), path)
    adapter = TimmModel(**TINY_MIXER, checkpoint=str(path))
    x = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(adapter.build().eval()(x), net(x))
    # a neuron of the token-mixing MLP in one patch: [B, D, T] read through its declared layout
    first = FirstActivation()
    objective = NeuronObjective(adapter, octaves=[Octave(steps=15, lr=(1.0, 1.0))])
    final = render(objective, ["blocks.1.mlp_tokens:neuron=7 patch=2"], tmp_path, callbacks=[first]).activations()
    assert final["blocks.1.mlp_tokens:neuron7_patch2"] > first.value + 1.0
