"""render(): one call from Python on any model, the same run as featvis fit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from lightning_featvis import Layout, render
from lightning_featvis.errors import FeatvisError
from lightning_featvis.models import AnyModule
from lightning_featvis.recipes import recipe_names
from lightning_featvis.rendering import layers, render_config
from lightning_featvis.zoo.digits import DigitsViT

QUIET = dict(enable_progress_bar=False, enable_model_summary=False)


def small_vit():
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=2,
                                                hidden_dim=32, mlp_dim=64, num_classes=10)


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_render_writes_the_same_pngs_as_featvis_fit_of_the_same_config(tmp_path):
    targets = ["heads.head:class=1-2", "encoder.layers.encoder_layer_1:neuron=0"]
    rendering = render(DigitsViT(), targets, recipe="best", steps=5, default_root_dir=str(tmp_path / "py"), **QUIET)
    config, _ = render_config(targets, "best", steps=5, default_root_dir=str(tmp_path / "cli"), **QUIET)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    subprocess.run([sys.executable, "-m", "lightning_featvis.cli", "fit", "--config", str(path)], check=True,
                   capture_output=True)
    from_python = pngs(tmp_path / "py" / "lightning_logs" / "version_0" / "images")
    from_cli = pngs(tmp_path / "cli" / "lightning_logs" / "version_0" / "images")
    assert len(from_python) == 3 and from_python == from_cli
    assert rendering.log_dir == tmp_path / "py" / "lightning_logs" / "version_0"
    # the Rendering holds what was written, in target order
    assert [t.key for t in rendering.targets] == ["heads.head:class1", "heads.head:class2",
                                                  "encoder.layers.encoder_layer_1:neuron0"]
    saved = rendering.save(tmp_path / "saved")
    assert pngs(saved) == from_python
    manifest = (saved / "manifest.csv").read_text().splitlines()
    assert manifest[0].startswith("target,layer,unit,file") and len(manifest) == 4


def test_a_plain_module_renders_with_its_layouts_read_from_one_forward(tmp_path):
    vit = small_vit()
    vit.train()
    rendering = render(vit, ["encoder.layers.encoder_layer_1:neuron=0-1", "heads.head:class=3"], steps=4,
                       default_root_dir=str(tmp_path), **QUIET)
    assert tuple(rendering.images.shape) == (3, 3, 32, 32)
    assert 0 <= float(rendering.images.min()) and float(rendering.images.max()) <= 1
    assert len(rendering.to_pil()) == 3 and rendering.grid().size[0] > 32
    assert rendering._repr_png_().startswith(b"\x89PNG")
    # the user's model is given back as it was
    assert vit.training and all(p.requires_grad for p in vit.parameters())
    adapter = AnyModule(vit)
    assert adapter.image_size == 32 and adapter.patches == 64
    assert adapter.layout("encoder.layers.encoder_layer_1") == Layout("tokens", prefix_tokens=1)
    assert adapter.layout("conv_proj") == Layout("map") and adapter.layout("heads.head") == Layout("logits")
    table = {info.name: info for info in layers(vit)}
    assert table["encoder.layers.encoder_layer_0"].shape == (1, 65, 32)
    assert vit.training  # listing its layers leaves the user's model as it was too


def test_a_cnn_takes_lucents_units_and_needs_its_input_size(tmp_path):
    net = torchvision.models.resnet18(num_classes=10)
    with pytest.raises(FeatvisError, match="pass image_size="):
        render(net, ["layer2:neuron=3"], steps=2, default_root_dir=str(tmp_path), **QUIET)
    rendering = render(net, ["layer2:neuron=3", "layer2:neuron=3 patch=5", "layer2:patch=5"], steps=2,
                       image_size=64, default_root_dir=str(tmp_path), **QUIET)
    assert tuple(rendering.images.shape) == (3, 3, 64, 64)
    assert AnyModule(net, image_size=64).layout("layer2") == Layout("map")


class Sequence3D(torch.nn.Module):
    """Tokens that are no patch grid: 10 tokens of width 8."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(3 * 16 * 16, 80)
        self.mix = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.mix(self.embed(x.flatten(1)).view(-1, 10, 8))


def test_an_undecidable_layout_names_the_layer_and_the_keyword(tmp_path):
    with pytest.raises(FeatvisError, match=r"layout of layer 'mix'.*layout=\{'mix': 'tokens'\}"):
        render(Sequence3D(), ["mix:neuron=0"], steps=1, image_size=16, default_root_dir=str(tmp_path), **QUIET)
    rendering = render(Sequence3D(), ["mix:neuron=0"], steps=1, image_size=16, layout={"mix": "tokens"},
                       default_root_dir=str(tmp_path), **QUIET)
    assert rendering.images.shape[0] == 1


@pytest.mark.parametrize("kind", ["vit", "vit_classifier", "clip", "clip_projection", "dinov2", "dinov2_registers",
                                  "siglip"])
def test_hugging_face_vision_models_render_a_block_neuron(kind, tmp_path):
    import transformers as T

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                 patch_size=8)
    model, prefix = {
        "vit": lambda: (T.ViTModel(T.ViTConfig(**small)), 1),
        "vit_classifier": lambda: (T.ViTForImageClassification(T.ViTConfig(**small, num_labels=3)), 1),
        "clip": lambda: (T.CLIPVisionModel(T.CLIPVisionConfig(**small)), 1),
        "clip_projection": lambda: (T.CLIPVisionModelWithProjection(T.CLIPVisionConfig(**small, projection_dim=8)), 1),
        "dinov2": lambda: (T.Dinov2Model(T.Dinov2Config(**small)), 1),
        "dinov2_registers": lambda: (T.Dinov2WithRegistersModel(T.Dinov2WithRegistersConfig(**small, num_register_tokens=4)), 5),
        "siglip": lambda: (T.SiglipVisionModel(T.SiglipVisionConfig(**small)), 0),
    }[kind]()
    blocks = next(n for n, m in model.named_modules()
                  if isinstance(m, torch.nn.ModuleList) and n.split(".")[-1] in ("layer", "layers"))
    adapter = AnyModule(model)
    assert adapter.layout(f"{blocks}.1") == Layout("tokens", prefix_tokens=prefix)
    assert adapter.image_size == 32
    rendering = render(model, [f"{blocks}.1:neuron=0", f"{blocks}.1.mlp:neuron=1 patch=2"], steps=3,
                       default_root_dir=str(tmp_path), **QUIET)
    assert rendering.images.shape[0] == 2 and rendering.activations.numel() == 2


def test_bad_options_are_one_message(tmp_path):
    with pytest.raises(FeatvisError, match="unknown option 'stepz'"):
        render(DigitsViT(), ["heads.head:class=1"], stepz=3)
    with pytest.raises(FeatvisError, match="unknown recipe 'bset'"):
        render(DigitsViT(), ["heads.head:class=1"], recipe="bset")
    with pytest.raises(FeatvisError, match="unknown layer 'heads.haed'"):
        render(DigitsViT(), ["heads.haed:class=1"], steps=1, default_root_dir=str(tmp_path), **QUIET)
    with pytest.raises(FeatvisError, match="set these on the adapter"):
        render(DigitsViT(), ["heads.head:class=1"], image_size=64)


def test_recipes_ship_inside_the_package_and_run_by_name(tmp_path):
    assert {"badger", "best", "lucent", "maco", "ghiasi"} <= set(recipe_names())
    done = subprocess.run([sys.executable, "-m", "lightning_featvis.cli", "fit", "--config", "recipe:best",
                           "--model.octaves=[{steps: 2}]", "--data.targets=[heads.head:class=4]",
                           f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "lightning_logs" / "version_0" / "images" / "heads.head__class4.png").is_file()


def test_a_hugging_face_model_loads_from_a_local_directory_with_its_image_processor(tmp_path):
    from conftest import tiny_hf_vit_dir

    from lightning_featvis.models import HuggingFaceVision

    adapter = HuggingFaceVision(tiny_hf_vit_dir(), task="classification")
    assert adapter.mean == (0.3, 0.3, 0.3) and adapter.std == (0.2, 0.2, 0.2)  # preprocessor_config.json
    assert adapter.logits_layer == "classifier" and adapter.image_size == 32
    rendering = render(adapter, ["classifier:class=2"], steps=3, default_root_dir=str(tmp_path), **QUIET)
    assert rendering.images.shape == (1, 3, 32, 32)
    untrained = HuggingFaceVision(tiny_hf_vit_dir("model"), pretrained=False)
    assert untrained.layout("pooler") == Layout("logits")


def test_a_hub_model_that_cannot_be_downloaded_says_what_to_fetch(monkeypatch):
    from lightning_featvis.models import HuggingFaceVision

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FeatvisError, match=r"facebook/dinov2-small.*hf download facebook/dinov2-small"):
        HuggingFaceVision("facebook/dinov2-small").build()


def test_a_timm_model_is_read_with_its_register_tokens_and_normalisation(tmp_path):
    import timm

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                            num_classes=5, reg_tokens=2)
    adapter = AnyModule(net)
    assert adapter.image_size == 32 and adapter.patches == 16  # the size it was built for, not its default
    assert adapter.layout("blocks.1") == Layout("tokens", prefix_tokens=3)  # class token and 2 registers
    assert adapter.mean == tuple(net.pretrained_cfg["mean"]) and adapter.logits_layer == "head"
    assert {i.name: i.layout for i in layers(net)}["blocks.1"] == "tokens (3 prefix tokens)"
    rendering = render(net, ["blocks.1:neuron=0 patch=3", "head:class=1"], steps=2, default_root_dir=str(tmp_path),
                       **QUIET)
    assert rendering.images.shape == (2, 3, 32, 32)


SPAWNED = """
import sys, torch, torchvision
import lightning_featvis as fv
if __name__ == "__main__":
    torch.manual_seed(0)
    net = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=2,
                                               hidden_dim=32, mlp_dim=64, num_classes=10)
    torch.nn.init.normal_(net.heads.head.weight, std=0.5)
    quiet = dict(steps=3, group_size=1, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    one = fv.render(net, ["heads.head:class=0-2"], default_root_dir=sys.argv[1] + "/one", **quiet)
    two = fv.render(net, ["heads.head:class=0-2"], default_root_dir=sys.argv[1] + "/two", devices=2,
                    strategy="ddp_spawn", **quiet)
    assert [t.key for t in two.targets] == [t.key for t in one.targets]
    # read back from the PNGs the spawned ranks wrote: 8-bit, so within half a grey level
    assert float((one.images - two.images).abs().max()) <= 0.5 / 255 + 1e-6
    assert torch.allclose(one.activations, two.activations, rtol=1e-4, atol=1e-5)
    print("ok")
"""


def test_render_on_two_spawned_processes_gives_the_one_process_images(tmp_path):
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_call_without_a_logger_leaves_nothing_in_the_working_directory(tmp_path, monkeypatch):
    from lightning_featvis.zoo.digits import DigitsViT

    monkeypatch.chdir(tmp_path)
    rendering = render(DigitsViT(), ["heads.head:class=1"], steps=2, logger=False, enable_progress_bar=False)
    assert rendering.images.shape[0] == 1 and rendering.log_dir is None
    assert list(tmp_path.iterdir()) == []


def test_the_auto_recipe_adapts_to_each_zoo_and_keeps_its_prior_beside_the_run(tmp_path):
    from lightning_featvis.zoo.photos import PhotosViT

    config, _ = render_config(["heads.head:class=3"], "auto", steps=4)
    assert config["model"]["init_args"]["octaves"] == [{"steps": 4, "lr": [0.1, 0.01]}]  # the recipe's ramp kept
    for network, grey in ((DigitsViT(), True), (PhotosViT(), False)):
        root = tmp_path / network.name
        rendering = render(network, ["heads.head:class=3"], recipe="auto", steps=4, default_root_dir=str(root), **QUIET)
        image = rendering.images[0]
        assert image.shape == (3, network.image_size, network.image_size)
        assert torch.equal(image[0], image[2]) == grey  # a grey canvas for the digits, colour for the photos
        assert (root / "lightning_logs" / "version_0" / "data_prior.pt").is_file()


def test_best_renders_any_model_and_auto_asks_for_the_data_a_plain_model_was_trained_on(tmp_path):
    """`best` is the digits' recipe: its prior is the digits' whatever the model. `auto` fits
    itself to the model's data, which a plain module names with ``training_data``."""
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=10)
    assert render(model, ["heads.head:class=3"], recipe="best", steps=2, logger=False, **QUIET).images.shape == (1, 3, 32, 32)
    with pytest.raises(FeatvisError, match="declares no training data"):
        render(model, ["heads.head:class=3"], recipe="auto", steps=2, logger=False, **QUIET)
    rendering = render(model, ["heads.head:class=3"], recipe="auto", steps=2, training_data="photos:val",
                       logger=False, **QUIET)
    image = rendering.images[0]
    assert image.shape == (3, 32, 32) and not torch.equal(image[0], image[2])  # the photos' colour canvas
