"""Model loading: names, weights enums, local checkpoint files, and clear errors offline."""

import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import tiny_vit

from lightning_featvis import FeatvisError
from lightning_featvis.models import TorchvisionViT


def test_custom_vit_round_trips_through_a_checkpoint_file(tmp_path):
    torch.manual_seed(0)
    net = tiny_vit().build().eval()
    x = torch.rand(2, 3, 16, 16)
    plain, lightning_style = tmp_path / "plain.pt", tmp_path / "lightning.ckpt"
    torch.save(net.state_dict(), plain)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, lightning_style)
    for path in (plain, lightning_style):
        loaded = tiny_vit(checkpoint=str(path)).build().eval()
        torch.testing.assert_close(loaded(x), net(x))


def test_a_checkpoint_of_another_model_is_refused_clearly(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(tiny_vit(hidden_dim=8, mlp_dim=16).build().state_dict(), path)
    with pytest.raises(FeatvisError, match="does not match"):
        tiny_vit(checkpoint=str(path)).build()
    with pytest.raises(FeatvisError, match="not found"):
        tiny_vit(checkpoint=str(tmp_path / "missing.pt")).build()


def test_torchvision_vit_names_and_weights_are_checked():
    with pytest.raises(FeatvisError, match="vit_b_16, vit_b_32"):
        TorchvisionViT("vit_q_7")
    with pytest.raises(FeatvisError, match="IMAGENET1K_SWAG_E2E_V1"):
        TorchvisionViT("vit_l_16", weights="IMAGENET1K_V9")


def test_weights_set_the_input_size():
    assert TorchvisionViT("vit_b_32", weights="IMAGENET1K_V1").image_size == 224
    assert TorchvisionViT("vit_l_16", weights="IMAGENET1K_SWAG_E2E_V1").image_size == 512
    assert TorchvisionViT("vit_l_16", weights="IMAGENET1K_SWAG_LINEAR_V1").image_size == 224


def test_offline_download_failure_explains_the_local_file_option(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FeatvisError, match=r"checkpoint: /path/to/vit_b_32-d86f8d99\.pth"):
        TorchvisionViT("vit_b_32", weights="IMAGENET1K_V1").build()


def test_named_vit_loads_a_local_checkpoint(tmp_path):
    torch.manual_seed(0)
    adapter = TorchvisionViT("vit_b_32")
    net = adapter.build().eval()
    path = tmp_path / "vit_b_32.pth"
    torch.save(net.state_dict(), path)
    loaded = TorchvisionViT("vit_b_32", checkpoint=str(path)).build().eval()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))


def test_a_nested_command_line_null_gets_a_way_out(tmp_path, capsys):
    from lightning_featvis.cli import main

    config = Path(__file__).resolve().parents[2] / "configs" / "seeds" / "vit_b32_first28_reconstruction_l1.yaml"
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(config), "--model.network.init_args.weights", "null",
              f"--trainer.default_root_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert "unknown weights 'None' for vit_b_32" in err and '"weights": null' in err


def test_a_safetensors_file_from_the_hub_loads_as_a_checkpoint(tmp_path):
    """What the offline advice says to fetch (`hf download ... model.safetensors`) loads as
    ``checkpoint:``."""
    from safetensors.torch import save_file

    from lightning_featvis.models import TimmModel

    torch.manual_seed(0)
    net = TimmModel("vit_tiny_patch16_224", model_kwargs={"img_size": 32, "num_classes": 3}).build()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded = TimmModel("vit_tiny_patch16_224", pretrained=True, checkpoint=str(path),
                       model_kwargs={"img_size": 32, "num_classes": 3}).build()
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
