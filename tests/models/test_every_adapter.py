"""Every ModelAdapter subclass the package ships, tested the moment it exists: it has a tiny
offline configuration here, its layers are described, and one step of a render on it writes a
finite result of the right shape."""

import inspect

import pytest
import torch
import torchvision
from conftest import render, tiny_hf_vit_dir, tiny_vit

import lightning_featvis.models as models
import lightning_featvis.zoo.digits  # noqa: F401  (registers the zoo's adapters)
from lightning_featvis import (
    ClassLogitObjective,
    Octave,
    SentenceTargets,
    TextReconstructionObjective,
)
from lightning_featvis.dictionaries import WithDictionaries
from lightning_featvis.layer_table import describe_layers
from lightning_featvis.models import ModelAdapter, TextModel
from lightning_featvis.models.text import packaged_minilm
from lightning_featvis.zoo.cnn import SmallCNN
from lightning_featvis.zoo.digits import DigitsCNN, DigitsGPT2, DigitsMixer, DigitsViT
from lightning_featvis.zoo.digits.sae import DIGITS_SAE_READS, DigitsSAE
from lightning_featvis.zoo.photos import PhotosCNN, PhotosViT

# a tiny offline instance of each adapter (random weights unless the package ships them)
TINY = {
    models.CustomViT: lambda: tiny_vit(),
    models.TorchvisionViT: lambda: models.TorchvisionViT("vit_b_32", weights=None, image_size=64),
    models.TimmModel: lambda: models.TimmModel("vit_tiny_patch16_224",
                                               model_kwargs=dict(img_size=16, patch_size=4, depth=2, num_classes=5)),
    models.FeedForwardMixer: lambda: models.FeedForwardMixer(size=None, image_size=16, patch_size=4, embed_dim=16,
                                                             depth=2, mlp_ratio=2.0, num_classes=5),
    models.GPT2ViTStack: lambda: models.GPT2ViTStack(weights=None, gpt2=None, num_blocks=2, image_size=16,
                                                     patch_size=4, hidden_dim=16, num_heads=2, mlp_dim=32,
                                                     num_classes=5, model_name="tiny_stack"),
    models.TextModel: lambda: models.TextModel(model=None, model_type="bert", tokenizer=packaged_minilm(),
                                               task="masked-lm", pretrained=False,
                                               config=dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                                           intermediate_size=64, vocab_size=30522)),
    models.MiniLM: lambda: models.MiniLM(num_blocks=1),
    models.TinyGPT2: lambda: models.TinyGPT2(n_layer=1),
    DigitsViT: lambda: DigitsViT(),
    DigitsMixer: lambda: DigitsMixer(),
    DigitsGPT2: lambda: DigitsGPT2(),
    DigitsCNN: lambda: DigitsCNN(),
    PhotosViT: lambda: PhotosViT(),
    PhotosCNN: lambda: PhotosCNN(),
    SmallCNN: lambda: SmallCNN(dict(image_size=16, channels=(8, 8), num_classes=3), None, (0.5,) * 3, (0.5,) * 3,
                               "small_cnn"),
    models.AnyModule: lambda: models.AnyModule(torchvision.models.resnet18(num_classes=5), image_size=32),
    models.HuggingFaceVision: lambda: models.HuggingFaceVision(tiny_hf_vit_dir(), task="classification"),
    WithDictionaries: lambda: WithDictionaries(DigitsViT(), {f"{DIGITS_SAE_READS}.sae": DigitsSAE()}),
}


def concrete_subclasses(base: type) -> set[type]:
    found = set()
    for sub in base.__subclasses__():
        found |= concrete_subclasses(sub)
        if not inspect.isabstract(sub) and not sub.__name__.startswith("_") and sub.__module__.startswith("lightning_featvis"):
            found.add(sub)
    return found


def test_every_shipped_adapter_has_a_tiny_configuration_here():
    missing = {c.__qualname__ for c in concrete_subclasses(ModelAdapter)} - {c.__qualname__ for c in TINY}
    assert not missing, f"add a tiny offline configuration to TINY for: {sorted(missing)}"


IMAGE_ADAPTERS = [c for c in TINY if not issubclass(c, TextModel)]
TEXT_ADAPTERS = [c for c in TINY if issubclass(c, TextModel)]


@pytest.mark.parametrize("adapter_class", IMAGE_ADAPTERS, ids=lambda c: c.__name__)
def test_every_image_adapter_describes_its_layers_and_renders_a_class_image(adapter_class, tmp_path):
    adapter = TINY[adapter_class]()
    layers = {info.name: info for info in describe_layers(adapter)}
    assert adapter.logits_layer in layers or adapter.logits_layer == ""
    assert all(info.layout for info in layers.values())
    objective = ClassLogitObjective(adapter, loss_form="mean", octaves=[Octave(steps=1)])
    got = render(objective, ["class=0"], tmp_path, callbacks=[])
    (image,) = got.images().values()
    s = adapter.image_size
    assert image.shape == (3, s, s) and torch.isfinite(image).all()
    assert not objective.net.training and not any(p.requires_grad for p in objective.net.parameters())


@pytest.mark.parametrize("adapter_class", TEXT_ADAPTERS, ids=lambda c: c.__name__)
def test_every_text_adapter_describes_its_layers_and_reconstructs_a_sentence(adapter_class, tmp_path):
    import lightning as L

    adapter = TINY[adapter_class]()
    layers = [info.name for info in describe_layers(adapter)]
    assert layers
    objective = TextReconstructionObjective(adapter, octaves=[Octave(steps=1, lr=(1.0, 1.0))])
    block = next(name for name in layers if name.endswith(".0"))
    data = SentenceTargets(["The sky is blue."], targets=[f"{block}:all"])
    trainer = L.Trainer(accelerator="cpu", devices=1, default_root_dir=tmp_path, max_epochs=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(objective, datamodule=data)
    (row,) = objective.report(objective.param.rendered(), list(objective.plan.targets))
    assert row["sentence"] == "The sky is blue." and 0 <= row["token_recovery"] <= 1
