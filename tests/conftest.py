"""Shared fixtures: tiny random-weight models and a helper that renders targets in-process."""

from __future__ import annotations

import os

import lightning as L
import pytest
import torch

from lightning_featvis import GaussianBlur, PositionalJitter, TargetDataModule
from lightning_featvis.callbacks import GroupResultHook
from lightning_featvis.models import CustomViT

torch.set_num_threads(1)  # tiny models: one thread is fastest and immune to core contention


def tiny_vit(**overrides) -> CustomViT:
    """A 16 px ViT with 4x4 patches of 4 px (16 patches + class token), width 16, 2 blocks."""
    config = dict(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
    config.update(overrides)
    return CustomViT(**config)


def load_benchmark(name: str, module_name: str | None = None):
    """The script ``benchmarks/<name>.py`` as a module, registered in ``sys.modules`` under
    ``module_name`` (default ``name``): dataclasses look their module up there, and spawned
    processes unpickle its callbacks by that name."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(module_name or name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name or name] = module
    spec.loader.exec_module(module)
    return module


_HF_DIRS: dict[str, str] = {}


def tiny_hf_vit_dir(task: str = "classification") -> str:
    """A local directory holding a tiny random Hugging Face ViT (``save_pretrained``, 32 px,
    patch 8, 5 classes) and its image processor config (mean 0.3, std 0.2: not a default)."""
    if task not in _HF_DIRS:
        import tempfile

        import transformers

        torch.manual_seed(0)
        config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=64, image_size=32, patch_size=8, num_labels=5)
        model = (transformers.ViTForImageClassification if task == "classification" else transformers.ViTModel)(config)
        folder = tempfile.mkdtemp(prefix=f"tiny_hf_vit_{task}_")
        model.save_pretrained(folder)
        transformers.ViTImageProcessor(image_mean=[0.3] * 3, image_std=[0.2] * 3, size={"height": 32, "width": 32}).save_pretrained(folder)
        _HF_DIRS[task] = folder
    return _HF_DIRS[task]


@pytest.fixture
def tiny(tmp_path_factory):
    """A tiny ViT with fixed random weights (a checkpoint file), head included: torchvision
    starts the head at zero, which would leave class logits constant."""
    torch.manual_seed(0)
    net = tiny_vit().build()
    torch.nn.init.normal_(net.heads.head.weight, std=0.5)
    path = tmp_path_factory.mktemp("tiny") / "tiny_vit.pt"
    torch.save(net.state_dict(), path)
    return tiny_vit(checkpoint=str(path))


class Collector(GroupResultHook):
    """Keeps every finished group's result."""

    def __init__(self):
        self.results = []

    def on_target_group_end(self, trainer, pl_module, result):
        self.results.append(result)

    def images(self) -> dict[str, torch.Tensor]:
        return {t.key: img for r in self.results for t, img in zip(r.targets, r.images)}

    def activations(self) -> dict[str, float]:
        return {t.key: float(a) for r in self.results for t, a in zip(r.targets, r.activations)}


class FirstActivation(L.Callback):
    """The logged mean activation of the first step: the initial canvas's."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            self.value = float(trainer.callback_metrics["activation"])


def render(objective, targets, root, group_size=8, callbacks=None, seed=0, **trainer_kwargs):
    """Fit ``objective`` on ``targets``; return the Collector holding the results."""
    L.seed_everything(seed, verbose=False)
    collector = Collector()
    if callbacks is None:
        callbacks = [PositionalJitter(), GaussianBlur(sigma=[[1.0, 0.5]])]
    options = dict(
        accelerator="cpu",
        devices=1,
        default_root_dir=root,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
    )
    trainer = L.Trainer(callbacks=[*callbacks, collector], **{**options, **trainer_kwargs})
    trainer.fit(objective, datamodule=TargetDataModule(targets, group_size=group_size))
    return collector


def sweep_config(targets: list[str], steps: int, group_size: int = 2) -> dict:
    """A featvis config, as plain data for a YAML file: neurons of the embedded digits ViT's
    block 2, ``steps`` per target, groups of ``group_size``; quiet Trainer."""
    return {
        "model": {
            "class_path": "lightning_featvis.NeuronObjective",
            "init_args": {
                "network": {"class_path": "lightning_featvis.zoo.digits.DigitsViT"},
                "layer": "encoder.layers.encoder_layer_1",
                "octaves": [{"steps": steps}],
            },
        },
        "data": {"class_path": "lightning_featvis.TargetDataModule",
                 "init_args": {"targets": targets, "group_size": group_size}},
        "trainer": {"enable_progress_bar": False, "enable_model_summary": False},
    }



# A test that skips says why in the summary (`pytest -rs`, as the README's command runs it).
# Where every resource must be present (CI sets FEATVIS_FORBID_SKIPS=1), a skip is a failure:
# a browser, a server or a mount that cannot start there would otherwise hide a broken test.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("FEATVIS_FORBID_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where skips are forbidden (FEATVIS_FORBID_SKIPS=1): {reason}"
