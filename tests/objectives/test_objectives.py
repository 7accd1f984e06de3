"""Objectives raise their targets, keep the network frozen, and are reproducible."""

import csv
import os

import lightning as L
import numpy as np
import torch
from conftest import FirstActivation, render
from PIL import Image

from lightning_featvis import ClassLogitObjective, ImageWriter, NeuronObjective, Octave
from lightning_featvis.examples.suppress import SuppressObjective
from lightning_featvis.models import CustomViT

BLOCK1 = "encoder.layers.encoder_layer_1"


def test_neuron_activation_rises(tiny, tmp_path):
    first = FirstActivation()
    objective = NeuronObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=30, lr=(0.05, 0.02))])
    got = render(objective, ["neuron=3", "neuron=5 patch=6", "patch=2"], tmp_path, callbacks=[first])
    final = got.activations()
    assert set(final) == {f"{BLOCK1}:neuron3", f"{BLOCK1}:neuron5_patch6", f"{BLOCK1}:patch2"}
    assert min(final.values()) > first.value + 1.0


def test_class_logit_rises_with_both_loss_forms(tiny, tmp_path):
    for form in ("l1", "mean"):
        first = FirstActivation()
        objective = ClassLogitObjective(tiny, loss_form=form, octaves=[Octave(steps=20, lr=(0.05, 0.05))])
        got = render(objective, ["class=2"], tmp_path, callbacks=[first]).activations()
        assert got["heads.head:class2"] > first.value + 1.0


def test_network_stays_frozen_and_in_eval(tiny, tmp_path):
    objective = NeuronObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=3)])
    before = {k: v.clone() for k, v in objective.build_network().state_dict().items()}
    render(objective, ["neuron=0"], tmp_path)
    assert not objective.net.training and all(not p.requires_grad for p in objective.net.parameters())
    objective.train()  # what Lightning or a user may call: the frozen network must not follow
    assert not objective.net.training
    for k, v in objective.net.state_dict().items():  # not one weight moved (a step would move it by ~lr)
        torch.testing.assert_close(v, before[k], rtol=0, atol=1e-7)
    assert [p is objective.param.canvas for p in objective.trainer.optimizers[0].param_groups[0]["params"]] == [True]


def test_same_seed_same_images_whatever_the_grouping(tiny, tmp_path):
    def run(seed, group_size):
        objective = NeuronObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=4, lr=(0.05, 0.05)), Octave(steps=4, size=24)])
        return render(objective, ["neuron=0-2"], tmp_path, group_size=group_size, seed=seed).images()

    a, b, c, d = run(0, 3), run(0, 3), run(0, 1), run(1, 3)
    for k in a:  # the same run twice
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert all(torch.allclose(a[k], c[k], atol=1e-5) for k in a)
    assert all(not torch.allclose(a[k], d[k], atol=1e-3) for k in a)


def test_writer_saves_every_target_with_a_manifest(tiny, tmp_path):
    objective = NeuronObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=2), Octave(steps=2, size=20)])
    got = render(objective, ["neuron=0-2", "heads.head:class=1"], tmp_path, group_size=2, callbacks=[ImageWriter()])
    folder = tmp_path / "images"
    umask = os.umask(0)
    os.umask(umask)
    for written in folder.iterdir():  # readable like any file the user creates, not owner-only
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list(folder.glob(".*.tmp"))
    rows = list(csv.DictReader(open(folder / "manifest.csv")))
    assert [r["file"] for r in rows] == [
        f"{BLOCK1}__neuron0.png", f"{BLOCK1}__neuron1.png", f"{BLOCK1}__neuron2.png", "heads.head__class1.png"
    ]
    acts = got.activations()
    for row in rows:
        assert abs(float(row["activation"]) - acts[row["target"]]) < 1e-4
        png = np.asarray(Image.open(folder / row["file"]))
        assert png.shape == (20, 20, 3)
        expected = got.images()[row["target"]].mul(255).add(0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
        assert np.abs(png.astype(int) - expected.astype(int)).max() <= 1


def test_checkpoints_hold_the_canvas_not_the_network(tiny, tmp_path):
    objective = NeuronObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=2)])
    render(objective, ["neuron=0"], tmp_path, enable_checkpointing=True)
    (ckpt,) = tmp_path.rglob("*.ckpt")
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert list(state) == ["param.canvas"]


def test_subclass_overriding_loss_lowers_the_unit(tiny, tmp_path):
    first = FirstActivation()
    objective = SuppressObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=20, lr=(0.5, 0.5))])
    got = render(objective, ["neuron=3"], tmp_path, callbacks=[first]).activations()
    assert got[f"{BLOCK1}:neuron3"] < first.value - 0.5


def test_bf16_mixed_autocasts_the_model_but_keeps_the_image_float32(tiny, tmp_path):
    first = FirstActivation()
    objective = NeuronObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=30, lr=(0.05, 0.02))])
    got = render(objective, ["neuron=3"], tmp_path, callbacks=[first], precision="bf16-mixed")
    assert objective.param.canvas.dtype == torch.float32
    assert got.activations()[f"{BLOCK1}:neuron3"] > first.value + 1.0


def test_outputs_are_written_even_when_no_output_callback_is_configured(tiny, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    objective = NeuronObjective(tiny, layer=BLOCK1, octaves=[Octave(steps=2)])
    render(objective, ["neuron=0"], tmp_path, callbacks=[], logger=TensorBoardLogger(tmp_path))
    assert list(tmp_path.rglob(f"images/{BLOCK1}__neuron0.png"))
    assert list(tmp_path.rglob("events.out.tfevents*"))


def test_class_units_can_be_read_as_log_probabilities(tmp_path):
    from lightning_featvis.targets import parse_targets
    from lightning_featvis.zoo.digits import DigitsViT

    logits = torch.randn(2, 10)
    block = torch.randn(2, 65, 64)
    (klass, neuron) = parse_targets(["heads.head:class=3", "encoder.layers.encoder_layer_1:neuron=5"])
    acts = {"heads.head": logits, "encoder.layers.encoder_layer_1": block}
    plain = NeuronObjective(DigitsViT())
    softmax = NeuronObjective(DigitsViT(), log_softmax_logits=True)
    torch.testing.assert_close(plain.select(acts, klass), logits[:, 3:4])
    torch.testing.assert_close(softmax.select(acts, klass), logits.log_softmax(-1)[:, 3:4])
    # other layers are untouched
    torch.testing.assert_close(softmax.select(acts, neuron), plain.select(acts, neuron))


def test_a_sweep_over_every_class_and_neuron_of_a_layer(tmp_path):
    """``*`` expands from the model itself: 10 classes of the head, 64 neurons of a block."""
    from lightning_featvis.zoo.digits import DigitsViT

    objective = NeuronObjective(DigitsViT(), octaves=[Octave(steps=1)])
    assert objective.unit_sizes("encoder.layers.encoder_layer_1") == {"neurons": 64, "patches": 64}  # 8x8 patches
    assert objective.unit_sizes("heads.head") == {"neurons": 10, "patches": 1}
    seen = render(objective,
                  ["heads.head:class=*", "encoder.layers.encoder_layer_1:neuron=*"], tmp_path, group_size=37)
    keys = [t.key for r in seen.results for t in r.targets]
    assert keys[:10] == [f"heads.head:class{c}" for c in range(10)]
    assert keys[10:] == [f"encoder.layers.encoder_layer_1:neuron{n}" for n in range(64)]


class DropoutViT(CustomViT):
    """A tiny ViT (16 px, 2 blocks of width 16) with dropout in its blocks and attention:
    train mode would change its outputs."""

    def __init__(self):
        super().__init__(image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                         num_classes=5)

    def build(self):
        from torchvision.models.vision_transformer import VisionTransformer

        return VisionTransformer(**self.config, dropout=0.5, attention_dropout=0.5)


class FrozenModeRecorder(L.Callback):
    """Records, at every forward of the frozen network during fit, whether any of its modules is
    in training mode. Before each step it also puts the objective in train mode, as Lightning's
    loops do (at the start of fit in some versions, after every validation run)."""

    def __init__(self):
        self.training_seen = []

    def on_train_start(self, trainer, pl_module):
        def pre_hook(module, args, kwargs):
            self.training_seen.append(any(m.training for m in module.modules()))

        pl_module.net.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module.train()


def test_the_frozen_network_runs_in_eval_mode_at_every_step_of_a_fit(tmp_path):
    torch.manual_seed(0)
    adapter = DropoutViT()
    # dropout matters in this network: train mode would give other activations
    from lightning_featvis.probe import Probe

    net, x = adapter.build(), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(Probe(net.train(), [BLOCK1])(x)[BLOCK1], Probe(net.eval(), [BLOCK1])(x)[BLOCK1], atol=1e-2)
    recorder = FrozenModeRecorder()
    objective = NeuronObjective(adapter, layer=BLOCK1, octaves=[Octave(steps=4)])
    render(objective, ["neuron=0-1"], tmp_path, callbacks=[recorder])
    assert len(recorder.training_seen) >= 4  # every step's forward (and the final measure)
    assert not any(recorder.training_seen), recorder.training_seen
    assert objective.training  # the objective itself did go to train mode
