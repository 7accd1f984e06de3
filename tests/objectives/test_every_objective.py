"""Every objective class the package ships, tested the moment it exists: it has a small run
here, its only trainable parameter is the input, the network stays frozen in eval mode, the
input moves, and every target gets a finite result."""

import inspect

import lightning as L
import pytest
import torch
from conftest import Collector, tiny_vit

import lightning_featvis.examples.suppress as suppress
from lightning_featvis import (
    AccentuationObjective,
    ClassLogitObjective,
    DeepDreamObjective,
    NeuronObjective,
    Octave,
    ReconstructionObjective,
    SentenceTargets,
    TargetDataModule,
    TextReconstructionObjective,
    VisualizationObjective,
)
from lightning_featvis.models import TinyGPT2

BLOCK1 = "encoder.layers.encoder_layer_1"
STEPS = [Octave(steps=2, lr=(0.5, 0.5))]

# per objective class: a factory (given the tiny ViT fixture) and the data module of a small run
RUNS = {
    NeuronObjective: (lambda tiny: NeuronObjective(tiny, layer=BLOCK1, octaves=STEPS),
                      lambda: TargetDataModule(["neuron=1", "patch=2"], group_size=2)),
    ClassLogitObjective: (lambda tiny: ClassLogitObjective(tiny, octaves=STEPS),
                          lambda: TargetDataModule(["class=0-1"], group_size=2)),
    DeepDreamObjective: (lambda tiny: DeepDreamObjective(tiny, photo="digits:3", layer=BLOCK1, octaves=STEPS),
                         lambda: TargetDataModule(["neuron=0"], group_size=1)),
    AccentuationObjective: (lambda tiny: AccentuationObjective(tiny, photo="digits:3", layer=BLOCK1, octaves=STEPS),
                            lambda: TargetDataModule(["neuron=0", "heads.head:class=1"], group_size=2)),
    ReconstructionObjective: (lambda tiny: ReconstructionObjective(tiny, target_image="china.jpg", layer=BLOCK1,
                                                              octaves=STEPS),
                              lambda: TargetDataModule(["all"], group_size=1)),
    TextReconstructionObjective: (lambda tiny: TextReconstructionObjective(TinyGPT2(n_layer=1),
                                                                      octaves=[Octave(steps=2, lr=(1.0, 1.0))]),
                                  lambda: SentenceTargets(["The sky is blue.", "Hi."], ["transformer.h.0:all"])),
    suppress.SuppressObjective: (lambda tiny: suppress.SuppressObjective(tiny, layer=BLOCK1, octaves=STEPS),
                                 lambda: TargetDataModule(["neuron=1"], group_size=1)),
}


def concrete_subclasses(base: type) -> set[type]:
    found = set()
    for sub in base.__subclasses__():
        found |= concrete_subclasses(sub)
        if not inspect.isabstract(sub) and sub.__module__.startswith("lightning_featvis"):
            found.add(sub)
    return found


def test_every_shipped_objective_has_a_small_run_here():
    missing = {c.__qualname__ for c in concrete_subclasses(VisualizationObjective)} - {c.__qualname__ for c in RUNS}
    assert not missing, f"add a small run to RUNS for: {sorted(missing)}"


def test_the_base_objective_cannot_be_used_without_a_loss():
    with pytest.raises(TypeError, match="abstract"):
        VisualizationObjective(tiny_vit())


@pytest.mark.parametrize("objective_class", list(RUNS), ids=lambda c: c.__name__)
def test_every_objective_trains_only_its_input_and_finishes_every_target(objective_class, tiny, tmp_path):
    make_objective, make_data = RUNS[objective_class]
    objective, data = make_objective(tiny), make_data()
    L.seed_everything(0, verbose=False)
    collector = Collector()
    starts = []

    class Start(L.Callback):  # the inputs as the first step found them (before its update)
        def on_before_backward(self, trainer, pl_module, loss):
            if not starts:
                starts.append(pl_module.param().detach().clone())

    trainer = L.Trainer(accelerator="cpu", devices=1, default_root_dir=tmp_path, max_epochs=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[Start(), collector])
    trainer.fit(objective, datamodule=data)

    trainable = {name for name, p in objective.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("param.") for name in trainable)
    assert not objective.net.training and not any(p.requires_grad for p in objective.net.parameters())
    results = [r for result in collector.results for r in zip(result.targets, result.images, result.losses)]
    assert sorted(t.key for t, _, _ in results) == sorted(t.key for t in objective.plan.targets)
    assert all(torch.isfinite(image).all() and torch.isfinite(loss) for _, image, loss in results)
    final = objective.param().detach()
    assert final.shape == starts[0].shape
    assert (final - starts[0]).abs().max() > 1e-6, "the input did not move"
